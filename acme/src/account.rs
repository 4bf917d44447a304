//! The ACME account per CA directory: restored from the store, or created on first need (terms
//! agreed, contact, External Account Binding) and stored at once; created again, replacing the
//! stored one, when the CA no longer knows it. Credentials are never logged.

use crate::config::Config;
use crate::error::{AcmeError, AtStep as _};
use crate::http::PacedClient;
use instant_acme::{Account, AccountCredentials, ExternalAccountKey, NewAccount};
use porter_store::{AcmeAccount, SecretText, Store};
use std::time::Duration;

/// How long a node waits for another node of the fleet that is creating the account.
const CREATION_WAIT: Duration = Duration::from_secs(30);

/// The stored account for `config.directory`, unless it is `gone` (its id, which the CA no
/// longer knows).
async fn stored(
    store: &dyn Store,
    config: &Config,
    http: &PacedClient,
    gone: Option<&str>,
) -> Result<Option<Account>, AcmeError> {
    let Some(record) = store.account(&config.directory).await? else {
        return Ok(None);
    };
    let credentials: AccountCredentials = serde_json::from_str(record.credentials.expose())
        .map_err(|e| AcmeError::Order(format!("stored account credentials do not load: {e}")))?;
    let account = Account::builder_with_http(Box::new(http.clone()))
        .from_credentials(credentials)
        .await
        .at(&config.directory, "account")?;
    Ok((gone != Some(account.id())).then_some(account))
}

/// The account for `config.directory`: the stored one, unless it is `gone`, else a new one,
/// created by one node of a fleet (the others wait for it, and use it: an order belongs to the
/// account that placed it, and any node may have to resume it).
pub(crate) async fn load_or_create(
    store: &dyn Store,
    config: &Config,
    http: &PacedClient,
    gone: Option<&str>,
) -> Result<Account, AcmeError> {
    if let Some(account) = stored(store, config, http, gone).await? {
        return Ok(account);
    }
    let waited = std::time::Instant::now();
    let _creating = loop {
        let name = format!("acme-account/{}", config.directory);
        if let Some(lock) = store.try_lock(&name).await? {
            break lock;
        }
        if waited.elapsed() > CREATION_WAIT {
            return Err(AcmeError::Order(
                "another node of the fleet has been creating the ACME account for 30 s".into(),
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    // Read again under the lock: the node that held it has just made one.
    if let Some(account) = stored(store, config, http, gone).await? {
        return Ok(account);
    }
    let builder = || Account::builder_with_http(Box::new(http.clone()));
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
