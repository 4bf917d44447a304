//! The ACME account per CA directory: restored from the store, or created on first need (terms
//! agreed, contact, External Account Binding) and stored at once; created again, replacing the
//! stored one, when the CA no longer knows it. Credentials are never logged.

use crate::config::Config;
use crate::error::{AcmeError, AtStep as _};
use crate::http::PacedClient;
use instant_acme::{Account, AccountCredentials, ExternalAccountKey, NewAccount};
use porter_store::{AcmeAccount, SecretText, Store};

/// The account for `config.directory`: the stored one, unless it is `gone` (its id, which
/// the CA no longer knows), else a new one.
pub(crate) async fn load_or_create(
    store: &dyn Store,
    config: &Config,
    http: &PacedClient,
    gone: Option<&str>,
) -> Result<Account, AcmeError> {
    let builder = || Account::builder_with_http(Box::new(http.clone()));
    if let Some(record) = store.account(&config.directory).await? {
        let credentials: AccountCredentials = serde_json::from_str(record.credentials.expose())
            .map_err(|e| {
                AcmeError::Order(format!("stored account credentials do not load: {e}"))
            })?;
        let account = builder()
            .from_credentials(credentials)
            .await
            .at(&config.directory, "account")?;
        if gone != Some(account.id()) {
            return Ok(account);
        }
    }
    let contact: Vec<&str> = config.contact.iter().map(String::as_str).collect();
    let eab = config
        .eab
        .as_ref()
        .map(|eab| ExternalAccountKey::new(eab.kid.clone(), &eab.hmac));
    let (account, credentials) = builder()
        .create(
            &NewAccount {
                contact: &contact,
                terms_of_service_agreed: true,
                only_return_existing: false,
            },
            config.directory.clone(),
            eab.as_ref(),
        )
        .await
        .at(&config.directory, "account")?;
    let credentials =
        serde_json::to_string(&credentials).map_err(|e| AcmeError::Order(e.to_string()))?;
    store
        .put_account(AcmeAccount {
            directory: config.directory.clone(),
            credentials: SecretText::new(credentials),
            contact: config.contact.clone(),
        })
        .await?;
    tracing::info!(directory = %config.directory, id = account.id(), "ACME account created");
    Ok(account)
}
