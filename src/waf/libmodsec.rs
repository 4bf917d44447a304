//! The WAF engine on libmodsecurity 3 (Debian's `libmodsecurity3`), opened with `dlopen` when
//! the WAF is first needed: a server whose sites never use the WAF maps none of it (nor the
//! dozen libraries it pulls in, some 9 MiB of resident pages), and runs where it is not
//! installed. Not through the `modsecurity` crate: its log callback panics (an abort across
//! the C boundary) on a log line that is not UTF-8, and a client chooses the bytes a rule's
//! message quotes.
//!
//! The rules run in `DetectionOnly`: every match is reported through the log callback and
//! Porter judges the score (see `super::judge`), so a site's threshold and exclusions change no
//! rule. The paranoia level reaches the CRS through `SERVER_PORT` (see `super::rules`).
//!
//! The one module where `unsafe` is allowed: every call into C is here, each with what makes
//! it sound.
#![allow(unsafe_code)]

use super::engine::{Engine, EngineError, Exchange, Match};
use porter_store::Recover as _;
use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::sync::{Mutex, OnceLock};

/// The library's file name (its soname: the ABI Porter was written against).
const LIBRARY: &str = "libmodsecurity.so.3";

extern "C" {
    /// libmodsecurity's error strings are `strdup`ed for the caller to free.
    fn free(ptr: *mut c_void);
}

/// `msc_cleanup` is not safe to run on two threads at once (owasp-modsecurity/ModSecurity#3138).
static CLEANUP: Mutex<()> = Mutex::new(());

type LogCallback = unsafe extern "C" fn(*mut c_void, *const c_void);

/// The functions of `modsecurity/modsecurity.h`, `rules_set.h` and `transaction.h` Porter
/// calls (libmodsecurity 3.0), with their C signatures; the handles are opaque.
struct Api {
    init: unsafe extern "C" fn() -> *mut c_void,
    set_connector_info: unsafe extern "C" fn(*mut c_void, *const c_char),
    set_log_cb: unsafe extern "C" fn(*mut c_void, Option<LogCallback>),
    cleanup: unsafe extern "C" fn(*mut c_void),
    create_rules_set: unsafe extern "C" fn() -> *mut c_void,
    rules_add: unsafe extern "C" fn(*mut c_void, *const c_char, *mut *const c_char) -> c_int,
    rules_cleanup: unsafe extern "C" fn(*mut c_void) -> c_int,
    new_transaction_with_id:
        unsafe extern "C" fn(*mut c_void, *mut c_void, *mut c_char, *mut c_void) -> *mut c_void,
    process_connection:
        unsafe extern "C" fn(*mut c_void, *const c_char, c_int, *const c_char, c_int) -> c_int,
    process_uri:
        unsafe extern "C" fn(*mut c_void, *const c_char, *const c_char, *const c_char) -> c_int,
    add_n_request_header:
        unsafe extern "C" fn(*mut c_void, *const u8, usize, *const u8, usize) -> c_int,
    process_request_headers: unsafe extern "C" fn(*mut c_void) -> c_int,
    append_request_body: unsafe extern "C" fn(*mut c_void, *const u8, usize) -> c_int,
    process_request_body: unsafe extern "C" fn(*mut c_void) -> c_int,
    transaction_cleanup: unsafe extern "C" fn(*mut c_void),
    /// Kept open for the process's life: the functions above point into it.
    _library: libloading::Library,
}

/// The library, opened once.
fn api() -> Result<&'static Api, EngineError> {
    static API: OnceLock<Result<Api, String>> = OnceLock::new();
    API.get_or_init(|| {
        // SAFETY: opening libmodsecurity runs its (and its dependencies') initialisers, which
        // have no preconditions; each symbol is read with the type of its C declaration.
        unsafe {
            let library = libloading::Library::new(LIBRARY).map_err(|e| {
                format!("{e} (install Debian's libmodsecurity3: apt-get install libmodsecurity3)")
            })?;
            macro_rules! symbol {
                ($name:literal) => {
                    *library
                        .get(concat!($name, "\0").as_bytes())
                        .map_err(|e| format!("{LIBRARY}: {e}"))?
                };
            }
            Ok(Api {
                init: symbol!("msc_init"),
                set_connector_info: symbol!("msc_set_connector_info"),
                set_log_cb: symbol!("msc_set_log_cb"),
                cleanup: symbol!("msc_cleanup"),
                create_rules_set: symbol!("msc_create_rules_set"),
                rules_add: symbol!("msc_rules_add"),
                rules_cleanup: symbol!("msc_rules_cleanup"),
                new_transaction_with_id: symbol!("msc_new_transaction_with_id"),
                process_connection: symbol!("msc_process_connection"),
                process_uri: symbol!("msc_process_uri"),
                add_n_request_header: symbol!("msc_add_n_request_header"),
                process_request_headers: symbol!("msc_process_request_headers"),
                append_request_body: symbol!("msc_append_request_body"),
                process_request_body: symbol!("msc_process_request_body"),
                transaction_cleanup: symbol!("msc_transaction_cleanup"),
                _library: library,
            })
        }
    })
    .as_ref()
    .map_err(|why| EngineError::Load(why.clone()))
}

/// A loaded rule set and the library instance its transactions run in.
pub(crate) struct LibModSecurity {
    api: &'static Api,
    msc: *mut c_void,
    rules: *mut c_void,
    count: usize,
}

// SAFETY: after loading, the instance and the rule set are only read (libmodsecurity shares
// them between the threads of threaded servers); each transaction is made, used and freed by
// one thread within `inspect`.
unsafe impl Send for LibModSecurity {}
unsafe impl Sync for LibModSecurity {}

impl LibModSecurity {
    /// Loads `config` (directives and `Include`s).
    pub(crate) fn load(config: &str) -> Result<Self, EngineError> {
        let api = api()?;
        let text = CString::new(config).map_err(|_| EngineError::Load("a NUL byte".into()))?;
        // SAFETY: plain constructor calls; the pointers are checked before use and owned by
        // the value returned (freed in Drop).
        unsafe {
            let msc = (api.init)();
            if msc.is_null() {
                return Err(EngineError::Load("msc_init failed".into()));
            }
            let connector = CString::new(concat!("porter ", env!("CARGO_PKG_VERSION")))
                .expect("no NUL in a version");
            (api.set_connector_info)(msc, connector.as_ptr());
            (api.set_log_cb)(msc, Some(on_log));
            let rules = (api.create_rules_set)();
            let mut engine = LibModSecurity {
                api,
                msc,
                rules,
                count: 0,
            };
            let mut error: *const c_char = std::ptr::null();
            let added = (api.rules_add)(rules, text.as_ptr(), &mut error);
            if added < 0 {
                let why = if error.is_null() {
                    "unknown error".to_owned()
                } else {
                    let why = CStr::from_ptr(error).to_string_lossy().into_owned();
                    free(error as *mut c_void);
                    why
                };
                return Err(EngineError::Load(why.trim().to_owned()));
            }
            engine.count = usize::try_from(added).unwrap_or(0);
            Ok(engine)
        }
    }
}

impl Drop for LibModSecurity {
    fn drop(&mut self) {
        let _one_at_a_time = CLEANUP.lock().recover();
        // SAFETY: no transaction outlives `inspect`, so nothing uses them any more.
        unsafe {
            (self.api.rules_cleanup)(self.rules);
            (self.api.cleanup)(self.msc);
        }
    }
}

impl Engine for LibModSecurity {
    fn name(&self) -> String {
        format!("libmodsecurity 3, {} rules", self.count)
    }

    fn inspect(&self, exchange: &Exchange, paranoia: u8) -> Result<Vec<Match>, EngineError> {
        let cstring = |s: &str| CString::new(s).map_err(|_| EngineError::Input("a NUL byte"));
        let id = cstring(&exchange.id)?;
        let client = cstring(&exchange.client.ip().to_string())?;
        let uri = cstring(&exchange.uri)?;
        let method = cstring(&exchange.method)?;
        let version = cstring(exchange.version)?;
        let server = c"127.0.0.1";
        let api = self.api;
        let mut found: Vec<Match> = Vec::new();
        // SAFETY: the transaction is made from the loaded instance and rules, used on this
        // thread only and freed before returning; every pointer passed lives until then, and
        // `found` (the log callback's data) too.
        unsafe {
            let tx = (api.new_transaction_with_id)(
                self.msc,
                self.rules,
                id.as_ptr() as *mut c_char,
                &mut found as *mut Vec<Match> as *mut c_void,
            );
            if tx.is_null() {
                return Err(EngineError::Input("no transaction"));
            }
            (api.process_connection)(
                tx,
                client.as_ptr(),
                i32::from(exchange.client.port()),
                server.as_ptr(),
                i32::from(paranoia),
            );
            (api.process_uri)(tx, uri.as_ptr(), method.as_ptr(), version.as_ptr());
            for (name, value) in &exchange.headers {
                (api.add_n_request_header)(
                    tx,
                    name.as_ptr(),
                    name.len(),
                    value.as_ptr(),
                    value.len(),
                );
            }
            (api.process_request_headers)(tx);
            if !exchange.body.is_empty() {
                (api.append_request_body)(tx, exchange.body.as_ptr(), exchange.body.len());
            }
            (api.process_request_body)(tx);
            (api.transaction_cleanup)(tx);
        }
        Ok(found)
    }
}

/// Called by libmodsecurity for each rule that matched and logs, with the transaction's data
/// (its `Vec<Match>`) and the message.
unsafe extern "C" fn on_log(data: *mut c_void, message: *const c_void) {
    if data.is_null() || message.is_null() {
        return;
    }
    // SAFETY: `data` is the `Vec<Match>` `inspect` gave the transaction, alive and used by
    // this thread only; `message` is a NUL-terminated string.
    let (found, line) = unsafe {
        (
            &mut *(data as *mut Vec<Match>),
            CStr::from_ptr(message as *const c_char).to_string_lossy(),
        )
    };
    // Nothing may unwind into C.
    let parsed = std::panic::catch_unwind(|| parse(&line));
    if let Ok(Some(found_one)) = parsed {
        found.push(found_one);
    }
}

/// Reads a match from a log line:
/// `ModSecurity: Warning. Matched ... against variable `ARGS:id' (Value: ...) [file "..."]
/// [line "..."] [id "942100"] [rev ""] [msg "..."] [data "..."] [severity "2"] [ver "..."]
/// [maturity "0"] [accuracy "0"] [tag "..."] ... [hostname "..."] [uri "..."] [unique_id "..."]`.
/// Only what comes before `[hostname "` is read: libmodsecurity escapes the quotes of what it
/// quotes before it, but not of the URI after it, where a client could write `"] [id "1"]`.
fn parse(line: &str) -> Option<Match> {
    let trusted = line.split(" [hostname \"").next().unwrap_or(line);
    let field = |name: &str| -> Option<&str> {
        let start = trusted.find(&format!("[{name} \""))? + name.len() + 3;
        let rest = &trusted[start..];
        Some(&rest[..rest.find("\"]")?])
    };
    let id = field("id")?.parse().ok()?;
    let tags = trusted
        .split("[tag \"")
        .skip(1)
        .filter_map(|rest| rest.split("\"]").next())
        .map(str::to_owned)
        .collect();
    // `against variable `ARGS:id'` for most operators; libinjection's says it in its data,
    // `found within ARGS:id: <value>` (the value is not kept).
    let var = line
        .split(" against variable `")
        .nth(1)
        .and_then(|rest| rest.split('\'').next())
        .or_else(|| {
            let rest = trusted.split(" found within ").nth(1)?;
            rest.split([' ', '"'])
                .next()
                .map(|v| v.trim_end_matches(':'))
        })
        .unwrap_or_default();
    Some(Match {
        id,
        severity: field("severity").and_then(|s| s.parse().ok()),
        msg: field("msg").unwrap_or_default().to_owned(),
        var: var.chars().take(128).collect(),
        tags,
    })
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn a_log_line_reads_up_to_the_client_written_uri() {
        let line = "ModSecurity: Warning. Matched \"Operator `DetectSQLi' with parameter `' against variable `ARGS:a' (Value: `1' or 1=1--' ) [file \"/usr/share/modsecurity-crs/rules/REQUEST-942-APPLICATION-ATTACK-SQLI.conf\"] [line \"45\"] [id \"942100\"] [rev \"\"] [msg \"SQL Injection Attack Detected via libinjection\"] [data \"Matched Data: s&1c found within ARGS:a\"] [severity \"2\"] [ver \"OWASP_CRS/3.3.4\"] [maturity \"0\"] [accuracy \"0\"] [tag \"attack-sqli\"] [tag \"paranoia-level/1\"] [hostname \"127.0.0.1\"] [uri \"/\"] [id \"777\"] [tag \"zzz\"]\"] [unique_id \"abc\"] [ref \"v8,13\"]";
        let m = parse(line).unwrap();
        assert_eq!(m.id, 942100);
        assert_eq!(m.severity, Some(2));
        assert_eq!(m.msg, "SQL Injection Attack Detected via libinjection");
        assert_eq!(m.var, "ARGS:a");
        assert_eq!(m.tags, ["attack-sqli", "paranoia-level/1"]);
        assert!(parse("ModSecurity: something else").is_none());
    }
}
