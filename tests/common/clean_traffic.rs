//! Ordinary traffic for the web application firewall's end-to-end test: requests a browser, a
//! WordPress admin, an API client, a feed reader or an uploader sends every day, none of which a
//! WAF may refuse. The firewall runs OWASP CRS 3.3.4 on libmodsecurity 3.0.9 at paranoia level 1
//! (inbound anomaly threshold 5) with Debian's `crs-setup.conf` defaults; every request here was
//! run through exactly that rule set and matched no rule at all.
//!
//! The corpus stays within those defaults on purpose:
//! - methods GET, HEAD, POST and OPTIONS only: `tx.allowed_methods` is `GET HEAD POST OPTIONS`,
//!   so rule 911100 refuses PUT, PATCH and DELETE (an API client that needs them sends a POST
//!   with `X-HTTP-Method-Override`, as WordPress's own `apiFetch` does);
//! - request bodies of type `application/x-www-form-urlencoded`, `multipart/form-data` or
//!   `application/json` only, charset utf-8 (rules 920420, 920480);
//! - no `Accept-Charset`, `Content-Encoding`, `Content-Range`, `Proxy`, `Lock-Token` or `If`
//!   request header (920450), no file extension of `tx.restricted_extensions` (920440);
//! - every body has a Content-Type, every POST a body (920340, 920180), no GET or HEAD a body.
//!
//! It also leaves out what is ordinary but that rule set refuses at paranoia 1 anyway: a literal
//! `%` in a query (`?s=100%25+rye`, 920220), a value starting with a command name
//! (`?s=python+tutorial`, 932150), `; time` (932105), `file (` (933160), `-->` (941180),
//! `<img src=` in post content (941160), `ü` and `ž` in one value (941310), a line ending in
//! `post office` (921110), a URL ending in `?` (931120), a `session_id` parameter (943120), an
//! apostrophe in an upload's file name (920120). The corpus passes unchanged with
//! `modsecurity.conf-recommended`'s JSON body processor and strict body rules (200001-200003).

#![allow(unreachable_pub)] // included by `#[path]` into a test crate, where `pub` reaches no one

/// One ordinary request, as a browser, a WordPress admin, an API client or an uploader sends it.
pub struct CleanRequest {
    /// A short description for failure messages.
    pub what: String,
    pub method: &'static str,
    /// Path and query, e.g. `/wp-admin/edit.php?post_type=page`.
    pub target: String,
    /// Without Host and Content-Length (the test adds those).
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// At least 200 ordinary requests no WAF should refuse.
pub fn corpus() -> Vec<CleanRequest> {
    let mut all = Vec::new();
    all.extend(front_pages());
    all.extend(searches());
    all.extend(wp_admin_pages());
    all.extend(wp_admin_ajax());
    all.extend(wp_forms());
    all.extend(wp_rest());
    all.extend(json_api());
    all.extend(html_forms());
    all.extend(large_cookies());
    all.extend(uploads());
    all.extend(static_assets());
    all.extend(head_and_options());
    all.extend(conditional_gets());
    all.extend(ranges());
    all
}

// ---------------------------------------------------------------------------------------------
// Building requests
// ---------------------------------------------------------------------------------------------

const SITE: &str = "https://example.com";

impl CleanRequest {
    fn new(method: &'static str, what: impl Into<String>, target: impl Into<String>) -> Self {
        CleanRequest {
            what: what.into(),
            method,
            target: target.into(),
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    fn get(what: impl Into<String>, target: impl Into<String>) -> Self {
        Self::new("GET", what, target)
    }

    fn post(what: impl Into<String>, target: impl Into<String>) -> Self {
        Self::new("POST", what, target)
    }

    fn headers(mut self, headers: Vec<(String, String)>) -> Self {
        self.headers.extend(headers);
        self
    }

    fn header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.to_owned(), value.into()));
        self
    }

    fn body(self, content_type: &str, body: impl Into<Vec<u8>>) -> Self {
        let mut this = self.header("Content-Type", content_type);
        this.body = body.into();
        this
    }

    /// A form body as a browser submits it.
    fn form(self, fields: &[(&str, &str)]) -> Self {
        self.body(
            "application/x-www-form-urlencoded",
            encode_pairs(fields, form_encode),
        )
    }

    /// A form body as jQuery's `$.ajax` sends it (WordPress admin screens).
    fn jquery_form(self, fields: &[(&str, &str)]) -> Self {
        self.body(
            "application/x-www-form-urlencoded; charset=UTF-8",
            encode_pairs(fields, jquery_encode),
        )
    }

    fn json(self, body: &str) -> Self {
        self.body("application/json", body)
    }
}

/// Form fields, name and value, in order.
type Fields<'a> = Vec<(&'a str, &'a str)>;

fn h(name: &str, value: impl Into<String>) -> (String, String) {
    (name.to_owned(), value.into())
}

/// Percent-encodes like a browser submitting a form (WHATWG urlencoded serializer): letters,
/// digits and `*-._` stay, a space becomes `+`, everything else is `%XX` of its UTF-8 bytes.
fn form_encode(text: &str) -> String {
    let mut out = String::new();
    for &b in text.as_bytes() {
        match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'*' | b'-' | b'.' | b'_' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Like JavaScript's `encodeURIComponent`: letters, digits and `-_.!~*'()` stay, a space is `%20`.
fn uri_component(text: &str) -> String {
    let mut out = String::new();
    for &b in text.as_bytes() {
        match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' => out.push(b as char),
            b'-' | b'_' | b'.' | b'!' | b'~' | b'*' | b'\'' | b'(' | b')' => out.push(b as char),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// jQuery's `$.param`: `encodeURIComponent`, then `%20` as `+`.
fn jquery_encode(text: &str) -> String {
    uri_component(text).replace("%20", "+")
}

fn encode_pairs(fields: &[(&str, &str)], encode: fn(&str) -> String) -> String {
    fields
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// A query string a browser builds from a GET form.
fn query(fields: &[(&str, &str)]) -> String {
    encode_pairs(fields, form_encode)
}

/// Standard base64 with padding, for cookie values that carry encoded JSON.
fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | (u32::from(b) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A small deterministic generator (xorshift64*): session ids, nonces and hashes look random,
/// but the corpus is the same on every run.
struct Tokens(u64);

impl Tokens {
    fn new(seed: u64) -> Self {
        Tokens(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn pick(&mut self, alphabet: &[u8], len: usize) -> String {
        (0..len)
            .map(|_| alphabet[(self.next() % alphabet.len() as u64) as usize] as char)
            .collect()
    }

    fn hex(&mut self, len: usize) -> String {
        self.pick(b"0123456789abcdef", len)
    }

    fn alnum(&mut self, len: usize) -> String {
        self.pick(
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
            len,
        )
    }

    fn digits(&mut self, len: usize) -> String {
        let mut s = self.pick(b"123456789", 1);
        s.push_str(&self.pick(b"0123456789", len - 1));
        s
    }

    fn uuid(&mut self) -> String {
        format!(
            "{}-{}-4{}-a{}-{}",
            self.hex(8),
            self.hex(4),
            self.hex(3),
            self.hex(3),
            self.hex(12)
        )
    }
}

// ---------------------------------------------------------------------------------------------
// Clients
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq)]
enum Browser {
    FirefoxLinux,
    FirefoxWindows,
    ChromeWindows,
    ChromeMac,
    Safari,
    Edge,
    ChromeAndroid,
    SafariIphone,
}

const BROWSERS: [Browser; 8] = [
    Browser::FirefoxLinux,
    Browser::ChromeWindows,
    Browser::Safari,
    Browser::Edge,
    Browser::ChromeAndroid,
    Browser::FirefoxWindows,
    Browser::SafariIphone,
    Browser::ChromeMac,
];

/// What the browser fetches, which decides its Accept and Sec-Fetch-* headers.
#[derive(Clone, Copy, PartialEq)]
enum Dest {
    Document,
    Style,
    Script,
    Image,
    Font,
    /// `fetch()` or XMLHttpRequest.
    Fetch,
    Video,
}

impl Browser {
    fn user_agent(self) -> &'static str {
        match self {
            Browser::FirefoxLinux => {
                "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0"
            }
            Browser::FirefoxWindows => {
                "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:122.0) Gecko/20100101 Firefox/122.0"
            }
            Browser::ChromeWindows => "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
            Browser::ChromeMac => "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/121.0.0.0 Safari/537.36",
            Browser::Safari => "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.2.1 Safari/605.1.15",
            Browser::Edge => "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36 Edg/120.0.2210.91",
            Browser::ChromeAndroid => "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Mobile Safari/537.36",
            Browser::SafariIphone => "Mozilla/5.0 (iPhone; CPU iPhone OS 17_2_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.2 Mobile/15E148 Safari/604.1",
        }
    }

    fn language(self) -> &'static str {
        match self {
            Browser::FirefoxLinux => "en-US,en;q=0.5",
            Browser::FirefoxWindows => "de-DE,de;q=0.8,en-US;q=0.5,en;q=0.3",
            Browser::ChromeWindows => "en-GB,en-US;q=0.9,en;q=0.8",
            Browser::ChromeMac => "fr-FR,fr;q=0.9,en-US;q=0.8,en;q=0.7",
            Browser::Safari => "en-IE,en-GB;q=0.9,en;q=0.8",
            Browser::Edge => "en-US,en;q=0.9",
            Browser::ChromeAndroid => "ja-JP,ja;q=0.9,en-US;q=0.8,en;q=0.7",
            Browser::SafariIphone => "en-GB,en;q=0.9",
        }
    }

    fn chromium(self) -> Option<(&'static str, &'static str, &'static str)> {
        match self {
            Browser::ChromeWindows => Some((
                "\"Not_A Brand\";v=\"8\", \"Chromium\";v=\"120\", \"Google Chrome\";v=\"120\"",
                "?0",
                "\"Windows\"",
            )),
            Browser::ChromeMac => Some((
                "\"Not A(Brand\";v=\"99\", \"Google Chrome\";v=\"121\", \"Chromium\";v=\"121\"",
                "?0",
                "\"macOS\"",
            )),
            Browser::Edge => Some((
                "\"Not_A Brand\";v=\"8\", \"Chromium\";v=\"120\", \"Microsoft Edge\";v=\"120\"",
                "?0",
                "\"Windows\"",
            )),
            Browser::ChromeAndroid => Some((
                "\"Not_A Brand\";v=\"8\", \"Chromium\";v=\"120\", \"Google Chrome\";v=\"120\"",
                "?1",
                "\"Android\"",
            )),
            _ => None,
        }
    }

    fn accept(self, dest: Dest) -> &'static str {
        let firefox = matches!(self, Browser::FirefoxLinux | Browser::FirefoxWindows);
        let safari = matches!(self, Browser::Safari | Browser::SafariIphone);
        match dest {
            Dest::Document if firefox => {
                "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8"
            }
            Dest::Document if safari => "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
            Dest::Document => "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,image/apng,*/*;q=0.8,application/signed-exchange;v=b3;q=0.7",
            Dest::Style => "text/css,*/*;q=0.1",
            Dest::Image if firefox => "image/avif,image/webp,*/*",
            Dest::Image if safari => "image/webp,image/avif,image/jxl,image/heic,image/heic-sequence,video/*;q=0.8,image/png,image/svg+xml,image/*;q=0.8,*/*;q=0.5",
            Dest::Image => "image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8",
            Dest::Font if firefox => "application/font-woff2;q=1.0,application/font-woff;q=0.9,*/*;q=0.8",
            Dest::Fetch => "application/json, text/plain, */*",
            Dest::Script | Dest::Font | Dest::Video => "*/*",
        }
    }
}

/// The headers `browser` sends for a request of kind `dest`, coming from `referer`.
fn browser(b: Browser, dest: Dest, referer: Option<&str>) -> Vec<(String, String)> {
    let mut headers = vec![
        h("User-Agent", b.user_agent()),
        h("Accept", b.accept(dest)),
        h("Accept-Language", b.language()),
    ];
    if dest == Dest::Video {
        headers.push(h("Accept-Encoding", "identity;q=1, *;q=0"));
    } else {
        headers.push(h("Accept-Encoding", "gzip, deflate, br"));
    }
    if let Some(referer) = referer {
        headers.push(h("Referer", referer));
    }
    if let Some((brands, mobile, platform)) = b.chromium() {
        headers.push(h("sec-ch-ua", brands));
        headers.push(h("sec-ch-ua-mobile", mobile));
        headers.push(h("sec-ch-ua-platform", platform));
    }
    let site = match referer {
        None => "none",
        Some(r) if r.starts_with(SITE) => "same-origin",
        Some(_) => "cross-site",
    };
    let (fetch_dest, mode) = match dest {
        Dest::Document => ("document", "navigate"),
        Dest::Style => ("style", "no-cors"),
        Dest::Script => ("script", "no-cors"),
        Dest::Image => ("image", "no-cors"),
        Dest::Font => ("font", "cors"),
        Dest::Fetch => ("empty", "cors"),
        Dest::Video => ("video", "no-cors"),
    };
    headers.push(h("Sec-Fetch-Dest", fetch_dest));
    headers.push(h("Sec-Fetch-Mode", mode));
    headers.push(h("Sec-Fetch-Site", site));
    if dest == Dest::Document {
        headers.push(h("Sec-Fetch-User", "?1"));
        headers.push(h("Upgrade-Insecure-Requests", "1"));
    }
    headers
}

/// A browser submitting a form on this site: a navigation with Origin.
fn form_post(b: Browser, referer: &str) -> Vec<(String, String)> {
    let mut headers = browser(b, Dest::Document, Some(referer));
    headers.push(h("Origin", SITE));
    headers.push(h("Cache-Control", "max-age=0"));
    headers
}

/// jQuery's XMLHttpRequest from a WordPress admin screen.
fn admin_xhr(b: Browser, referer: &str) -> Vec<(String, String)> {
    let mut headers = browser(b, Dest::Fetch, Some(referer));
    headers[1] = h("Accept", "application/json, text/javascript, */*; q=0.01");
    headers.push(h("X-Requested-With", "XMLHttpRequest"));
    headers.push(h("Origin", SITE));
    headers
}

/// An API client: no browser headers, a bearer token.
fn api_client(user_agent: &str, token: &str) -> Vec<(String, String)> {
    vec![
        h("User-Agent", user_agent),
        h("Accept", "application/json"),
        h("Accept-Encoding", "gzip"),
        h("Authorization", format!("Bearer {token}")),
    ]
}

// ---------------------------------------------------------------------------------------------
// Cookies
// ---------------------------------------------------------------------------------------------

/// WordPress's COOKIEHASH, md5 of the site URL.
const COOKIEHASH: &str = "7d3e0b9f1c5a42e8b6f0d4a2c8e1b3f5";

/// The cookies of a logged-in WordPress administrator.
fn wp_admin_cookies() -> String {
    let mut t = Tokens::new(7);
    let token = t.alnum(43);
    format!(
        "wordpress_sec_{COOKIEHASH}=admin%7C1705570800%7C{token}%7C{}; \
         wordpress_logged_in_{COOKIEHASH}=admin%7C1705570800%7C{token}%7C{}; \
         wp-settings-1=libraryContent%3Dbrowse%26editor%3Dtinymce%26posts_list_mode%3Dlist%26mfold%3Do; \
         wp-settings-time-1=1705398000; wordpress_test_cookie=WP%20Cookie%20check",
        t.hex(64),
        t.hex(64),
    )
}

/// What a returning visitor's browser carries on the front end.
fn visitor_cookies(seed: u64) -> String {
    let mut t = Tokens::new(seed);
    format!(
        "_ga=GA1.1.{}.1705398000; _ga_{}=GS1.1.1705398000.4.1.1705398712.0.0.0; \
         wp_woocommerce_session_{COOKIEHASH}=t_{}%7C%7C1705570800%7C%7C1705567200%7C%7C{}; \
         woocommerce_items_in_cart=1; woocommerce_cart_hash={}",
        t.digits(10),
        t.pick(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", 10),
        t.hex(30),
        t.hex(32),
        t.hex(32),
    )
}

/// A cookie header as a well-tracked site's visitor sends it: session, framework, consent and
/// analytics cookies: about 3.3 KB, or with `heavy` (more trackers) 5.1 to 5.6 KB.
fn big_cookie_header(seed: u64, heavy: bool) -> String {
    let mut t = Tokens::new(seed);
    let now = 1705398000u64 + seed * 3600;
    let mut cookies = vec![
        format!(
            "PHPSESSID={}",
            t.pick(b"abcdefghijklmnopqrstuvwxyz0123456789", 26)
        ),
        format!("_ga=GA1.2.{}.{now}", t.digits(10)),
        format!("_gid=GA1.2.{}.{now}", t.digits(9)),
        format!("_gcl_au=1.1.{}.{now}", t.digits(10)),
        format!("_fbp=fb.1.{now}123.{}", t.digits(10)),
        format!(
            "_ga_{}=GS1.1.{now}.7.1.{}.0.0.0",
            t.pick(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", 10),
            now + 431
        ),
    ];
    let hotjar = format!(
        "{{\"id\":\"{}\",\"created\":{now}000,\"existing\":true}}",
        t.uuid()
    );
    cookies.push(format!(
        "_hjSessionUser_{}={}",
        t.digits(7),
        base64(hotjar.as_bytes())
    ));
    cookies.push(format!(
        "CookieConsent={{stamp:%27{}%3D%3D%27%2Cnecessary:true%2Cpreferences:true%2Cstatistics:true%2Cmarketing:false%2Cmethod:%27explicit%27%2Cver:1%2Cutc:{now}512%2Cregion:%27ie%27}}",
        t.alnum(54)
    ));
    cookies.push(format!(
        "OptanonConsent=isGpcEnabled=0&datestamp=Tue+Jan+16+2024+10%3A15%3A00+GMT%2B0000+(Greenwich+Mean+Time)&version=202310.1.0&browserGpcFlag=0&isIABGlobal=false&hosts=&consentId={}&interactionCount=1&landingPath=NotLandingPage&groups=C0001%3A1%2CC0002%3A1%2CC0003%3A0%2CC0004%3A0&geolocation=IE%3BL&AwaitingReconsent=false",
        t.uuid()
    ));
    cookies.push(format!(
        "wordpress_logged_in_{COOKIEHASH}=maeve.k%7C{}%7C{}%7C{}",
        now + 172800,
        t.alnum(43),
        t.hex(64)
    ));
    cookies.push(format!(
        "_clck={}%7C2%7Cfih%7C0%7C1475",
        t.pick(b"abcdefghijklmnopqrstuvwxyz0123456789", 6)
    ));
    cookies.push(format!(
        "_clsk={}%7C{now}123%7C3%7C1%7Cq.clarity.ms%2Fcollect",
        t.pick(b"abcdefghijklmnopqrstuvwxyz0123456789", 7)
    ));
    cookies.push(format!("__stripe_mid={}{}", t.uuid(), t.hex(6)));
    cookies.push(format!("__stripe_sid={}{}", t.uuid(), t.hex(6)));
    cookies.push(format!("ajs_anonymous_id=%22{}%22", t.uuid()));
    cookies.push(format!("hubspotutk={}", t.hex(32)));
    cookies.push(format!(
        "__hstc=20629287.{}.{now}000.{now}000.{now}000.1",
        t.hex(32)
    ));
    cookies.push(format!("_uetsid={}", t.hex(32)));
    cookies.push(format!("_uetvid={}", t.hex(32)));
    cookies.push(format!("_pk_id.1.1fff={}.{now}.", t.hex(16)));
    cookies.push("_pk_ses.1.1fff=1".to_owned());
    cookies.push(format!(
        "intercom-device-id-{}={}",
        t.alnum(8).to_lowercase(),
        t.uuid()
    ));
    cookies.push("locale=en-IE; currency=EUR; theme=dark".to_owned());
    cookies.push("recently_viewed=8731%2C8702%2C8655%2C8590".to_owned());
    cookies.push(format!("_fbc=fb.1.{now}456.IwAR{}", t.alnum(58)));
    cookies.push(format!(
        "_hjSession_{}={}",
        t.digits(7),
        base64(
            format!(
                "{{\"id\":\"{}\",\"c\":{now}000,\"s\":0,\"r\":1,\"sb\":0}}",
                t.uuid()
            )
            .as_bytes()
        )
    ));
    // Laravel's encrypted cookies: base64 of a JSON object, URL-encoded.
    for name in ["XSRF-TOKEN", "laravel_session"] {
        let json = format!(
            "{{\"iv\":\"{}==\",\"value\":\"{}\",\"mac\":\"{}\",\"tag\":\"\"}}",
            t.alnum(22),
            t.alnum(320),
            t.hex(64)
        );
        cookies.push(format!(
            "{name}={}",
            base64(json.as_bytes()).replace('=', "%3D")
        ));
    }
    if heavy {
        cookies.push(format!(
            "cf_clearance={}-{now}-0-1-{}.{}.{}-0.2.{now}",
            t.alnum(43),
            t.hex(8),
            t.hex(8),
            t.hex(8)
        ));
        cookies.push(format!("__cf_bm={}-{now}-0-{}", t.alnum(43), t.alnum(120)));
        cookies.push(format!(
            "intercom-session-{}={}--{}",
            t.alnum(8).to_lowercase(),
            t.alnum(200 + 150 * (seed % 4) as usize),
            t.hex(40)
        ));
        cookies.push(format!(
            "mp_{}_mixpanel=%7B%22distinct_id%22%3A%20%22{}%22%2C%22%24device_id%22%3A%20%22{}%22%2C%22%24initial_referrer%22%3A%20%22https%3A%2F%2Fwww.google.com%2F%22%2C%22%24initial_referring_domain%22%3A%20%22www.google.com%22%2C%22plan%22%3A%20%22pro%22%7D",
            t.hex(32),
            t.uuid(),
            t.uuid()
        ));
        let amplitude = format!(
            "{{\"deviceId\":\"{}\",\"userId\":null,\"sessionId\":{now}000,\"optOut\":false,\"lastEventTime\":{now}512,\"lastEventId\":{}}}",
            t.uuid(),
            t.digits(3)
        );
        cookies.push(format!(
            "AMP_{}={}",
            t.hex(10),
            base64(amplitude.as_bytes()).replace('=', "%3D")
        ));
        cookies.push(
            "ab_tests=%7B%22checkout_v2%22%3A%22b%22%2C%22hero_copy%22%3A%22control%22%2C%22free_shipping_banner%22%3A%22a%22%7D"
                .to_owned(),
        );
        cookies.push(format!("_shopify_y={}; _shopify_s={}", t.uuid(), t.uuid()));
        cookies.push(format!("wp-settings-2=editor%3Dhtml%26libraryContent%3Dbrowse%26hidetb%3D1; wp-settings-time-2={now}"));
        cookies.push(format!("_session_id={}", t.hex(128)));
        cookies.push(format!(
            "remember_web_59ba36addc2b2f9401580f014c7f58ea4e30989d={}",
            base64(format!("{}|{}|$2y$10${}", t.digits(4), t.alnum(60), t.alnum(53)).as_bytes())
                .replace('=', "%3D")
        ));
    }
    cookies.join("; ")
}

// ---------------------------------------------------------------------------------------------
// The families
// ---------------------------------------------------------------------------------------------

/// A WordPress site's public pages, as visitors of different browsers reach them.
fn front_pages() -> Vec<CleanRequest> {
    let mut t = Tokens::new(11);
    let gclid = format!("Cj0KCQiA{}_BwE", t.alnum(60));
    let fbclid = format!("IwAR{}", t.alnum(56));
    let pages: Vec<(String, Option<String>)> = vec![
        ("/".into(), None),
        ("/".into(), Some("https://www.google.com/".into())),
        ("/about/".into(), Some(format!("{SITE}/"))),
        ("/blog/".into(), Some(format!("{SITE}/about/"))),
        ("/blog/page/2/".into(), Some(format!("{SITE}/blog/"))),
        ("/2024/01/15/sourdough-starter-day-one/".into(), Some(format!("{SITE}/blog/"))),
        ("/2023/12/02/christmas-stollen-recipe/".into(), Some("https://www.bing.com/".into())),
        ("/category/recipes/".into(), Some(format!("{SITE}/"))),
        ("/category/recipes/page/3/".into(), Some(format!("{SITE}/category/recipes/"))),
        ("/tag/gluten-free/".into(), Some(format!("{SITE}/2024/01/15/sourdough-starter-day-one/"))),
        ("/author/maeve/".into(), Some(format!("{SITE}/about/"))),
        ("/?p=123".into(), None),
        ("/?page_id=45".into(), None),
        ("/contact-us/".into(), Some(format!("{SITE}/"))),
        ("/shop/".into(), Some("https://www.instagram.com/".into())),
        ("/shop/?orderby=price-desc&filter_flour=rye".into(), Some(format!("{SITE}/shop/"))),
        ("/product/country-sourdough-800g/".into(), Some(format!("{SITE}/shop/"))),
        ("/product/country-sourdough-800g/?attribute_pa_slicing=sliced".into(), Some(format!("{SITE}/shop/"))),
        ("/cart/".into(), Some(format!("{SITE}/product/country-sourdough-800g/"))),
        ("/checkout/".into(), Some(format!("{SITE}/cart/"))),
        ("/checkout/order-received/9876/?key=wc_order_Xk3pQ9vLm2Ra7".into(), Some(format!("{SITE}/checkout/"))),
        ("/my-account/orders/?page=2".into(), Some(format!("{SITE}/my-account/"))),
        ("/?utm_source=newsletter&utm_medium=email&utm_campaign=jan_2024&utm_content=hero-button".into(), None),
        (format!("/2024/01/15/sourdough-starter-day-one/?gclid={gclid}"), Some("https://www.google.com/".into())),
        (format!("/?fbclid={fbclid}"), Some("https://l.facebook.com/".into())),
        ("/2024/01/15/sourdough-starter-day-one/?replytocom=456".into(), Some(format!("{SITE}/2024/01/15/sourdough-starter-day-one/"))),
        ("/2024/01/15/sourdough-starter-day-one/amp/".into(), Some("https://www.google.com/".into())),
        ("/wp-login.php?redirect_to=https%3A%2F%2Fexample.com%2Fwp-admin%2F&reauth=1".into(), None),
        ("/wp-login.php?loggedout=true&wp_lang=en_US".into(), Some(format!("{SITE}/wp-admin/"))),
        ("/wp-login.php?action=lostpassword".into(), Some(format!("{SITE}/wp-login.php"))),
        ("/events/?month=2024-03&view=list".into(), Some(format!("{SITE}/"))),
        ("/recipes/cr%C3%A8me-br%C3%BBl%C3%A9e/".into(), Some(format!("{SITE}/category/recipes/"))),
        ("/%E6%9D%B1%E4%BA%AC/%E3%83%91%E3%83%B3/".into(), Some(format!("{SITE}/"))),
    ];
    let mut out = Vec::new();
    for (i, (path, referer)) in pages.into_iter().enumerate() {
        let b = BROWSERS[i % BROWSERS.len()];
        let mut req = CleanRequest::get(format!("front page {path}"), path).headers(browser(
            b,
            Dest::Document,
            referer.as_deref(),
        ));
        if i % 3 == 1 {
            req = req.header("Cookie", visitor_cookies(i as u64));
        }
        out.push(req);
    }
    // Feeds, sitemaps and robots, as crawlers and readers fetch them.
    let bots = [
        ("/feed/", "Feedly/1.0 (+http://www.feedly.com/fetcher.html; 12 subscribers; )", "application/rss+xml, application/rdf+xml;q=0.8, application/atom+xml;q=0.6, application/xml;q=0.4, text/xml;q=0.4"),
        ("/comments/feed/", "NetNewsWire (RSS Reader; https://netnewswire.com/)", "application/rss+xml, application/atom+xml, application/xml, text/xml, */*;q=0.5"),
        ("/category/recipes/feed/", "Mozilla/5.0 (compatible; inoreader.com; 4 subscribers)", "*/*"),
        ("/wp-sitemap.xml", "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"),
        ("/wp-sitemap-posts-post-1.xml", "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)", "*/*"),
        ("/robots.txt", "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)", "text/plain,text/html;q=0.9,*/*;q=0.8"),
        ("/2024/01/15/sourdough-starter-day-one/", "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)", "*/*"),
        ("/product/country-sourdough-800g/", "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)", "*/*"),
        ("/wp-cron.php?doing_wp_cron=1705398123.4567890167236328125000", "WordPress/6.4.2; https://example.com", "*/*"),
        ("/wp-cron.php?doing_wp_cron", "curl/8.5.0", "*/*"),
    ];
    for (path, ua, accept) in bots {
        out.push(
            CleanRequest::get(format!("crawler or reader {path} ({ua})"), path).headers(vec![
                h("User-Agent", ua),
                h("Accept", accept),
                h("Accept-Encoding", "gzip, deflate"),
            ]),
        );
    }
    out
}

/// Site searches with ordinary punctuation and non-ASCII terms, as GET forms submit them.
fn searches() -> Vec<CleanRequest> {
    let terms = [
        "how to bake bread",
        "gluten-free pizza dough",
        "\"rye bread\" recipe",
        "what's the best flour?",
        "wholemeal vs. whole wheat",
        "café au lait",
        "crème brûlée",
        "banana bread (vegan)",
        "Zoë's birthday cake",
        "東京 パン",
        "bread 🍞",
        "scones, jam & cream",
        "oven temp 220°C / 425°F",
        "how long to proof dough overnight?",
        "christmas cookies 2023",
    ];
    let mut out = Vec::new();
    for (i, term) in terms.iter().enumerate() {
        let b = BROWSERS[(i + 3) % BROWSERS.len()];
        let target = if i % 4 == 3 {
            format!(
                "/search?{}",
                query(&[("q", term), ("page", "2"), ("sort", "relevance")])
            )
        } else {
            format!("/?{}", query(&[("s", term)]))
        };
        out.push(
            CleanRequest::get(format!("site search for {term:?}"), target).headers(browser(
                b,
                Dest::Document,
                Some(&format!("{SITE}/blog/")),
            )),
        );
    }
    out.push(
        CleanRequest::get(
            "shop filter form",
            format!(
                "/products?{}",
                query(&[
                    ("category", "kitchen"),
                    ("min_price", "10"),
                    ("max_price", "49.99"),
                    ("colour[]", "navy"),
                    ("colour[]", "sage green"),
                    ("in_stock", "1"),
                ])
            ),
        )
        .headers(browser(
            Browser::Edge,
            Dest::Document,
            Some(&format!("{SITE}/products")),
        )),
    );
    out
}

/// WordPress admin screens, navigated by a logged-in administrator.
fn wp_admin_pages() -> Vec<CleanRequest> {
    let pages = [
        "/wp-admin/",
        "/wp-admin/index.php",
        "/wp-admin/edit.php",
        "/wp-admin/edit.php?post_type=page",
        "/wp-admin/edit.php?post_type=page&paged=2",
        "/wp-admin/edit.php?post_status=draft&post_type=post",
        "/wp-admin/edit.php?s=sourdough&post_status=all&post_type=post&action=-1&m=0&cat=0&filter_action=Filter&paged=1&action2=-1",
        "/wp-admin/edit.php?orderby=title&order=asc",
        "/wp-admin/edit.php?post_type=post&trashed=1&ids=130",
        "/wp-admin/post.php?post=123&action=edit",
        "/wp-admin/post.php?post=123&action=edit&classic-editor",
        "/wp-admin/post-new.php",
        "/wp-admin/post-new.php?post_type=page",
        "/wp-admin/revision.php?revision=789",
        "/wp-admin/upload.php?mode=grid",
        "/wp-admin/upload.php?mode=list&attachment-filter=post_mime_type%3Aimage&m=202401",
        "/wp-admin/upload.php?item=456",
        "/wp-admin/edit-comments.php?comment_status=moderated",
        "/wp-admin/edit-comments.php?p=123&comment_status=approved",
        "/wp-admin/edit-tags.php?taxonomy=category",
        "/wp-admin/edit-tags.php?taxonomy=post_tag&post_type=post",
        "/wp-admin/themes.php",
        "/wp-admin/themes.php?theme=twentytwentyfour",
        "/wp-admin/theme-install.php?browse=popular",
        "/wp-admin/customize.php",
        "/wp-admin/customize.php?return=%2Fwp-admin%2Fthemes.php",
        "/wp-admin/customize.php?autofocus%5Bsection%5D=title_tagline",
        "/wp-admin/site-editor.php?postType=wp_template&postId=twentytwentyfour%2F%2Fhome",
        "/wp-admin/nav-menus.php?action=edit&menu=3",
        "/wp-admin/widgets.php",
        "/wp-admin/plugins.php",
        "/wp-admin/plugins.php?plugin_status=active",
        "/wp-admin/plugins.php?plugin_status=inactive&paged=1",
        "/wp-admin/plugin-install.php?s=contact+form&tab=search&type=term",
        "/wp-admin/users.php",
        "/wp-admin/user-edit.php?user_id=2&wp_http_referer=%2Fwp-admin%2Fusers.php",
        "/wp-admin/profile.php",
        "/wp-admin/options-general.php",
        "/wp-admin/options-general.php?settings-updated=true",
        "/wp-admin/options-reading.php",
        "/wp-admin/options-permalink.php",
        "/wp-admin/tools.php",
        "/wp-admin/export.php",
        "/wp-admin/site-health.php",
        "/wp-admin/site-health.php?tab=debug",
        "/wp-admin/update-core.php",
        "/wp-admin/admin.php?page=wc-orders&status=wc-processing",
        "/wp-admin/admin.php?page=wc-admin&path=%2Fanalytics%2Foverview",
        "/wp-admin/admin.php?page=wc-settings&tab=checkout&section=bacs",
        "/wp-admin/admin.php?page=wpcf7&post=45&action=edit",
        "/wp-admin/edit.php?post_type=product&product_cat=bread&orderby=price&order=desc",
    ];
    let cookies = wp_admin_cookies();
    let mut out = Vec::new();
    let mut referer = format!("{SITE}/wp-admin/");
    for (i, page) in pages.iter().enumerate() {
        let b = [Browser::ChromeMac, Browser::FirefoxLinux, Browser::Safari][i % 3];
        out.push(
            CleanRequest::get(format!("admin screen {page}"), *page)
                .headers(browser(b, Dest::Document, Some(&referer)))
                .header("Cookie", cookies.clone()),
        );
        referer = format!("{SITE}{page}");
    }
    // The admin's own stylesheet and script bundles, with WordPress's bracketed parameters.
    out.push(
        CleanRequest::get(
            "admin styles bundle",
            "/wp-admin/load-styles.php?c=0&dir=ltr&load%5Bchunk_0%5D=dashicons,admin-bar,common,forms,admin-menu,dashboard,list-tables,edit,revisions,media,themes,about,nav-menus,wp-pointer,widgets&load%5Bchunk_1%5D=,site-icon,l10n,buttons,wp-auth-check&ver=6.4.2",
        )
        .headers(browser(Browser::ChromeMac, Dest::Style, Some(&format!("{SITE}/wp-admin/"))))
        .header("Cookie", cookies.clone()),
    );
    out.push(
        CleanRequest::get(
            "admin styles bundle, brackets unencoded",
            "/wp-admin/load-styles.php?c=1&dir=ltr&load[chunk_0]=dashicons,admin-bar,common,forms,admin-menu&ver=6.4.2",
        )
        .headers(browser(Browser::FirefoxLinux, Dest::Style, Some(&format!("{SITE}/wp-admin/"))))
        .header("Cookie", cookies.clone()),
    );
    out.push(
        CleanRequest::get(
            "admin scripts bundle",
            "/wp-admin/load-scripts.php?c=0&load%5Bchunk_0%5D=jquery-core,jquery-migrate,utils,moxiejs,plupload&ver=6.4.2",
        )
        .headers(browser(Browser::Safari, Dest::Script, Some(&format!("{SITE}/wp-admin/upload.php"))))
        .header("Cookie", cookies),
    );
    out
}

/// WordPress admin-ajax.php calls, as jQuery posts them from admin screens.
fn wp_admin_ajax() -> Vec<CleanRequest> {
    let cookies = wp_admin_cookies();
    let edit = format!("{SITE}/wp-admin/post.php?post=123&action=edit");
    let calls: Vec<(&str, String, Fields)> = vec![
        (
            "heartbeat on the post editor",
            edit.clone(),
            vec![
                ("data[wp-refresh-post-lock][post_id]", "123"),
                ("data[wp-refresh-post-lock][lock]", "1705398000:1"),
                ("data[wp-refresh-nonces][post_id]", "123"),
                ("interval", "15"),
                ("_nonce", "8c2f1a9e4d"),
                ("action", "heartbeat"),
                ("screen_id", "post"),
                ("has_focus", "true"),
            ],
        ),
        (
            "heartbeat with a classic-editor autosave",
            edit.clone(),
            vec![
                ("data[wp_autosave][post_id]", "123"),
                ("data[wp_autosave][post_type]", "post"),
                ("data[wp_autosave][post_author]", "1"),
                ("data[wp_autosave][post_title]", "Sourdough starter, day one: what to expect"),
                ("data[wp_autosave][content]", "Day one is mostly waiting. Mix 50 g of rye flour with 50 g of water (about 25°C), cover it loosely, and leave it somewhere warm.\n\nDon't worry if nothing happens for a day or two!"),
                ("data[wp_autosave][excerpt]", ""),
                ("data[wp_autosave][catslist]", "5,9"),
                ("data[wp_autosave][comment_status]", "open"),
                ("data[wp_autosave][ping_status]", "open"),
                ("data[wp_autosave][_wpnonce]", "b71e0c3a55"),
                ("data[wp-refresh-post-lock][post_id]", "123"),
                ("data[wp-refresh-post-lock][lock]", "1705398000:1"),
                ("interval", "60"),
                ("_nonce", "8c2f1a9e4d"),
                ("action", "heartbeat"),
                ("screen_id", "post"),
                ("has_focus", "false"),
            ],
        ),
        (
            "heartbeat on the dashboard",
            format!("{SITE}/wp-admin/"),
            vec![
                ("interval", "60"),
                ("_nonce", "8c2f1a9e4d"),
                ("action", "heartbeat"),
                ("screen_id", "dashboard"),
                ("has_focus", "false"),
            ],
        ),
        (
            "heartbeat on the pages list",
            format!("{SITE}/wp-admin/edit.php?post_type=page"),
            vec![
                ("data[wp-check-locked-posts][]", "post-45"),
                ("data[wp-check-locked-posts][]", "post-46"),
                ("data[wp-check-locked-posts][]", "post-51"),
                ("interval", "60"),
                ("_nonce", "8c2f1a9e4d"),
                ("action", "heartbeat"),
                ("screen_id", "edit-page"),
                ("has_focus", "true"),
            ],
        ),
        (
            "closed postboxes",
            format!("{SITE}/wp-admin/"),
            vec![
                ("action", "closed-postboxes"),
                ("closed", "dashboard_primary,dashboard_quick_press"),
                ("hidden", ""),
                ("closedpostboxesnonce", "3a9d0e7f21"),
                ("page", "dashboard"),
            ],
        ),
        (
            "dashboard widget order",
            format!("{SITE}/wp-admin/"),
            vec![
                ("action", "meta-box-order"),
                ("_ajax_nonce", "e4b81c6f09"),
                ("page_columns", "0"),
                ("order[normal]", "dashboard_site_health,dashboard_right_now,dashboard_activity"),
                ("order[side]", "dashboard_quick_press,dashboard_primary"),
                ("page", "dashboard"),
            ],
        ),
        (
            "sample permalink",
            edit.clone(),
            vec![
                ("action", "sample-permalink"),
                ("post_id", "123"),
                ("new_title", "Sourdough starter, day one: what to expect"),
                ("new_slug", ""),
                ("samplepermalinknonce", "5f0a7b3c8e"),
            ],
        ),
        (
            "quick edit of a post",
            format!("{SITE}/wp-admin/edit.php"),
            vec![
                ("post_title", "Christmas stollen (with marzipan)"),
                ("post_name", "christmas-stollen-recipe"),
                ("mm", "12"),
                ("jj", "02"),
                ("aa", "2023"),
                ("hh", "09"),
                ("mn", "30"),
                ("ss", "00"),
                ("post_password", ""),
                ("post_author", "1"),
                ("post_category[]", "0"),
                ("post_category[]", "5"),
                ("tax_input[post_tag]", "christmas, baking, fruit bread"),
                ("comment_status", "open"),
                ("_status", "publish"),
                ("action", "inline-save"),
                ("post_type", "post"),
                ("post_view", "list"),
                ("screen", "edit-post"),
                ("_inline_edit", "d2c7e91a40"),
                ("post_ID", "118"),
                ("edit_date", "true"),
                ("post_status", "all"),
            ],
        ),
        (
            "media library query",
            format!("{SITE}/wp-admin/upload.php?mode=grid"),
            vec![
                ("action", "query-attachments"),
                ("post_id", "0"),
                ("query[orderby]", "date"),
                ("query[order]", "DESC"),
                ("query[posts_per_page]", "80"),
                ("query[paged]", "1"),
            ],
        ),
        (
            "dashboard news widget",
            format!("{SITE}/wp-admin/"),
            vec![
                ("action", "dashboard-widgets"),
                ("widget", "dashboard_primary"),
                ("pagenow", "dashboard"),
            ],
        ),
        (
            "release the post lock on leaving",
            edit.clone(),
            vec![
                ("action", "wp-remove-post-lock"),
                ("_wpnonce", "b71e0c3a55"),
                ("post_ID", "123"),
                ("active_post_lock", "1705398000:1"),
            ],
        ),
        (
            "add a category",
            format!("{SITE}/wp-admin/edit-tags.php?taxonomy=category"),
            vec![
                ("action", "add-tag"),
                ("screen", "edit-category"),
                ("taxonomy", "category"),
                ("post_type", "post"),
                ("_wpnonce_add-tag", "c0e3f8a261"),
                ("_wp_http_referer", "/wp-admin/edit-tags.php?taxonomy=category"),
                ("tag-name", "Gluten-free"),
                ("slug", ""),
                ("parent", "-1"),
                ("description", "Recipes without wheat, rye or barley. Oats are fine (if certified)."),
            ],
        ),
    ];
    let mut out = Vec::new();
    for (i, (what, referer, fields)) in calls.into_iter().enumerate() {
        let b = [Browser::ChromeMac, Browser::FirefoxLinux, Browser::Safari][i % 3];
        out.push(
            CleanRequest::post(format!("admin-ajax: {what}"), "/wp-admin/admin-ajax.php")
                .headers(admin_xhr(b, &referer))
                .header("Cookie", cookies.clone())
                .jquery_form(&fields),
        );
    }
    // WooCommerce's cart fragments refresh, from every shop page.
    out.push(
        CleanRequest::post(
            "WooCommerce cart fragments",
            "/?wc-ajax=get_refreshed_fragments",
        )
        .headers(admin_xhr(Browser::ChromeAndroid, &format!("{SITE}/shop/")))
        .header("Cookie", visitor_cookies(99))
        .jquery_form(&[("time", "1705398000123")]),
    );
    out
}

/// WordPress's own forms: log-in, lost password, comments, the classic editor, settings, profile.
fn wp_forms() -> Vec<CleanRequest> {
    let cookies = wp_admin_cookies();
    let mut out = vec![
        CleanRequest::post("WordPress log-in", "/wp-login.php")
            .headers(form_post(Browser::FirefoxWindows, &format!("{SITE}/wp-login.php?redirect_to=https%3A%2F%2Fexample.com%2Fwp-admin%2F&reauth=1")))
            .header("Cookie", "wordpress_test_cookie=WP%20Cookie%20check")
            .form(&[
                ("log", "maeve.k"),
                ("pwd", "Tr0ub4dor&3-horse!"),
                ("rememberme", "forever"),
                ("wp-submit", "Log In"),
                ("redirect_to", "https://example.com/wp-admin/"),
                ("testcookie", "1"),
            ]),
        CleanRequest::post("WordPress lost password", "/wp-login.php?action=lostpassword")
            .headers(form_post(Browser::SafariIphone, &format!("{SITE}/wp-login.php?action=lostpassword")))
            .header("Cookie", "wordpress_test_cookie=WP%20Cookie%20check")
            .form(&[
                ("user_login", "maeve.kavanagh+blog@example.ie"),
                ("redirect_to", ""),
                ("wp-submit", "Get New Password"),
            ]),
        CleanRequest::post("blog comment", "/wp-comments-post.php")
            .headers(form_post(Browser::ChromeWindows, &format!("{SITE}/2024/01/15/sourdough-starter-day-one/")))
            .form(&[
                ("comment", "Thanks for this! I tried it last weekend (with spelt instead of rye) and it worked, although it took 6 days, not 5.\r\n\r\nQuestion: can I keep it in the fridge between feeds? My partner said \"it smells like beer\" - is that normal?"),
                ("author", "Siobhán O'Brien"),
                ("email", "siobhan.obrien@example.ie"),
                ("url", "https://siobhan-bakes.example.net/"),
                ("wp-comment-cookies-consent", "yes"),
                ("submit", "Post Comment"),
                ("comment_post_ID", "123"),
                ("comment_parent", "0"),
            ]),
        CleanRequest::post("blog comment reply", "/wp-comments-post.php")
            .headers(form_post(Browser::ChromeAndroid, &format!("{SITE}/2024/01/15/sourdough-starter-day-one/?replytocom=456")))
            .form(&[
                ("comment", "Yes, a beery smell is normal - it means the yeast is hungry. Feed it and it'll be fine :)"),
                ("author", "Maeve"),
                ("email", "maeve@example.com"),
                ("url", ""),
                ("submit", "Post Comment"),
                ("comment_post_ID", "123"),
                ("comment_parent", "456"),
            ]),
        CleanRequest::post("classic editor: save draft", "/wp-admin/post.php")
            .headers(form_post(Browser::FirefoxLinux, &format!("{SITE}/wp-admin/post.php?post=123&action=edit")))
            .header("Cookie", cookies.clone())
            .form(&[
                ("_wpnonce", "b71e0c3a55"),
                ("_wp_http_referer", "/wp-admin/post.php?post=123&action=edit"),
                ("user_ID", "1"),
                ("action", "editpost"),
                ("originalaction", "editpost"),
                ("post_author", "1"),
                ("post_type", "post"),
                ("original_post_status", "draft"),
                ("referredby", "https://example.com/wp-admin/edit.php"),
                ("_wp_original_http_referer", "https://example.com/wp-admin/edit.php"),
                ("post_ID", "123"),
                ("meta-box-order-nonce", "41a7c0d9e2"),
                ("closedpostboxesnonce", "3a9d0e7f21"),
                ("post_title", "Sourdough starter, day one: what to expect"),
                ("samplepermalinknonce", "5f0a7b3c8e"),
                ("content", "Day one is mostly waiting. Mix 50 g of rye flour with 50 g of water (about 25°C), cover it loosely, and leave it somewhere warm.\r\n\r\nYou'll need:\r\n\r\n- a 1-litre jar\r\n- rye flour, ideally organic\r\n- a little patience!\r\n\r\nDon't worry if nothing happens for a day or two; it's normal."),
                ("wp-preview", ""),
                ("hidden_post_status", "draft"),
                ("post_status", "draft"),
                ("hidden_post_password", ""),
                ("hidden_post_visibility", "public"),
                ("visibility", "public"),
                ("post_password", ""),
                ("mm", "01"),
                ("jj", "15"),
                ("aa", "2024"),
                ("hh", "09"),
                ("mn", "30"),
                ("ss", "00"),
                ("save", "Save Draft"),
                ("post_category[]", "0"),
                ("post_category[]", "5"),
                ("tax_input[post_tag]", "bread, sourdough, starter"),
                ("newtag[post_tag]", ""),
                ("excerpt", "What happens (and what doesn't) on the first day of a new starter."),
                ("trackback_url", ""),
                ("metakeyselect", "#NONE#"),
                ("metakeyinput", ""),
                ("metavalue", ""),
                ("_ajax_nonce-add-meta", "0b8e2f5c71"),
                ("advanced_view", "1"),
                ("comment_status", "open"),
                ("ping_status", "open"),
                ("post_name", "sourdough-starter-day-one"),
                ("post_author_override", "1"),
            ]),
        CleanRequest::post("classic editor: publish with HTML", "/wp-admin/post.php")
            .headers(form_post(Browser::ChromeMac, &format!("{SITE}/wp-admin/post.php?post=118&action=edit")))
            .header("Cookie", cookies.clone())
            .form(&[
                ("_wpnonce", "e90d3b6a14"),
                ("_wp_http_referer", "/wp-admin/post.php?post=118&action=edit"),
                ("user_ID", "1"),
                ("action", "editpost"),
                ("originalaction", "editpost"),
                ("post_type", "post"),
                ("original_post_status", "draft"),
                ("post_ID", "118"),
                ("post_title", "Christmas stollen (with marzipan)"),
                ("content", "<h2>Before you start</h2>\r\n<p>Stollen keeps for <strong>weeks</strong> - it's <em>better</em> after a few days.</p>\r\n<ul>\r\n<li>500 g strong white flour</li>\r\n<li>200 g raisins, soaked overnight</li>\r\n<li>150 g marzipan</li>\r\n</ul>\r\n<blockquote>\"The smell alone is worth it.\" - my granny</blockquote>\r\n<p>See also <a href=\"https://example.com/2024/01/15/sourdough-starter-day-one/\">our sourdough starter guide</a>.</p>"),
                ("post_status", "draft"),
                ("visibility", "public"),
                ("publish", "Publish"),
                ("post_category[]", "0"),
                ("post_category[]", "5"),
                ("tax_input[post_tag]", "christmas, baking"),
                ("comment_status", "open"),
                ("ping_status", "open"),
                ("post_name", "christmas-stollen-recipe"),
            ]),
        CleanRequest::post("general settings", "/wp-admin/options.php")
            .headers(form_post(Browser::ChromeMac, &format!("{SITE}/wp-admin/options-general.php")))
            .header("Cookie", cookies.clone())
            .form(&[
                ("option_page", "general"),
                ("action", "update"),
                ("_wpnonce", "9d4c2b7e1f"),
                ("_wp_http_referer", "/wp-admin/options-general.php"),
                ("blogname", "Flour & Water"),
                ("blogdescription", "Bread, baked slowly - in Cork since 2015"),
                ("siteurl", "https://example.com"),
                ("home", "https://example.com"),
                ("new_admin_email", "owner@example.com"),
                ("default_role", "subscriber"),
                ("WPLANG", ""),
                ("timezone_string", "Europe/Dublin"),
                ("date_format", "F j, Y"),
                ("date_format_custom", "F j, Y"),
                ("time_format", "g:i a"),
                ("time_format_custom", "g:i a"),
                ("start_of_week", "1"),
                ("submit", "Save Changes"),
            ]),
        CleanRequest::post("profile update", "/wp-admin/profile.php")
            .headers(form_post(Browser::Safari, &format!("{SITE}/wp-admin/profile.php")))
            .header("Cookie", cookies.clone())
            .form(&[
                ("_wpnonce", "2e6f9a0c4b"),
                ("_wp_http_referer", "/wp-admin/profile.php"),
                ("from", "profile"),
                ("checkuser_id", "1"),
                ("admin_color", "fresh"),
                ("admin_bar_front", "1"),
                ("locale", "site-default"),
                ("first_name", "Maeve"),
                ("last_name", "O'Brien-Kavanagh"),
                ("nickname", "maeve.k"),
                ("display_name", "Maeve O'Brien-Kavanagh"),
                ("email", "maeve@example.com"),
                ("url", "https://example.com/about/"),
                ("description", "Baker, writer & occasional photographer. Based in Cork!\r\nAsk me anything about rye."),
                ("pass1", ""),
                ("pass2", ""),
                ("action", "update"),
                ("user_id", "1"),
                ("submit", "Update Profile"),
            ]),
        CleanRequest::post("menu save", "/wp-admin/nav-menus.php?action=update&menu=3")
            .headers(form_post(Browser::ChromeMac, &format!("{SITE}/wp-admin/nav-menus.php?action=edit&menu=3")))
            .header("Cookie", cookies)
            .form(&[
                ("closedpostboxesnonce", "3a9d0e7f21"),
                ("meta-box-order-nonce", "41a7c0d9e2"),
                ("update-nav-menu-nonce", "a83d5e0f17"),
                ("_wp_http_referer", "/wp-admin/nav-menus.php?action=edit&menu=3"),
                ("menu-name", "Main menu"),
                ("menu-item-title[201]", "Shop"),
                ("menu-item-url[201]", "https://example.com/shop/"),
                ("menu-item-db-id[201]", "201"),
                ("menu-item-parent-id[201]", "0"),
                ("menu-item-position[201]", "1"),
                ("menu-item-title[202]", "Recipes & stories"),
                ("menu-item-db-id[202]", "202"),
                ("menu-item-parent-id[202]", "0"),
                ("menu-item-position[202]", "2"),
                ("menu-locations[primary]", "3"),
                ("menu", "3"),
                ("save_menu", "Save Menu"),
            ]),
    ];
    // A comment form submitted from each kind of browser, with the little variations people type.
    let comments = [
        (
            "Zoë",
            "Made this for my daughter's 7th birthday - everyone loved it! 🎉",
        ),
        (
            "Jean-Luc",
            "Très bon ! J'ai ajouté un peu de sel, c'était parfait.",
        ),
        ("健太", "とても美味しかったです。ありがとうございます！"),
        (
            "Ann-Marie",
            "Is 180°C fan or conventional? My oven runs hot...",
        ),
    ];
    for (i, (author, comment)) in comments.iter().enumerate() {
        let b = BROWSERS[(i * 3 + 1) % BROWSERS.len()];
        out.push(
            CleanRequest::post(format!("blog comment by {author}"), "/wp-comments-post.php")
                .headers(form_post(
                    b,
                    &format!("{SITE}/2023/12/02/christmas-stollen-recipe/"),
                ))
                .form(&[
                    ("comment", comment),
                    ("author", author),
                    ("email", &format!("reader{i}@example.org")),
                    ("url", ""),
                    ("submit", "Post Comment"),
                    ("comment_post_ID", "118"),
                    ("comment_parent", "0"),
                ]),
        );
    }
    out
}

/// WordPress's REST API, read by themes and the block editor, written through `apiFetch`.
fn wp_rest() -> Vec<CleanRequest> {
    let cookies = wp_admin_cookies();
    let editor = format!("{SITE}/wp-admin/post.php?post=123&action=edit");
    let reads = [
        "/wp-json/",
        "/wp-json/wp/v2/posts?per_page=10&_embed",
        "/wp-json/wp/v2/posts?per_page=10&page=2&categories=5&_embed=1",
        "/wp-json/wp/v2/pages?parent=0&orderby=menu_order&order=asc&per_page=100",
        "/wp-json/wp/v2/categories?per_page=100&orderby=count&order=desc&_fields=id,name,count",
        "/wp-json/wp/v2/users/me?context=edit&_locale=user",
        "/wp-json/wp/v2/media?media_type=image&per_page=20&_locale=user",
        "/wp-json/wp/v2/search?search=bread&per_page=20&type=post&_locale=user",
        "/wp-json/wp/v2/types/post?context=edit&_locale=user",
        "/wp-json/oembed/1.0/embed?url=https%3A%2F%2Fexample.com%2F2024%2F01%2F15%2Fsourdough-starter-day-one%2F",
        "/wp-json/wc/store/v1/cart",
        "/?rest_route=/wp/v2/posts&per_page=5",
    ];
    let mut out = Vec::new();
    for (i, path) in reads.iter().enumerate() {
        let mut headers = browser(
            [Browser::ChromeMac, Browser::Edge, Browser::FirefoxLinux][i % 3],
            Dest::Fetch,
            Some(&editor),
        );
        headers.push(h("X-WP-Nonce", "6f1e9c3a2d"));
        out.push(
            CleanRequest::get(format!("WordPress REST read {path}"), *path)
                .headers(headers)
                .header("Cookie", cookies.clone()),
        );
    }
    let writes = [
        (
            "block editor autosave",
            "/wp-json/wp/v2/posts/123/autosaves?_locale=user",
            None,
            r#"{"id":123,"title":"Sourdough starter, day one: what to expect","excerpt":"What happens (and what doesn't) on the first day.","status":"draft"}"#,
        ),
        (
            "block editor update, PUT through POST",
            "/wp-json/wp/v2/posts/123?_locale=user",
            Some("PUT"),
            r#"{"id":123,"title":"Sourdough starter, day one","status":"publish","categories":[5,9],"tags":[14,22],"meta":{"footnotes":""}}"#,
        ),
        (
            "page settings, PATCH through POST",
            "/wp-json/wp/v2/pages/45?_locale=user",
            Some("PATCH"),
            r#"{"menu_order":3,"comment_status":"closed"}"#,
        ),
        (
            "trash a post, DELETE through POST",
            "/wp-json/wp/v2/posts/130?_locale=user",
            Some("DELETE"),
            r#"{"force":false}"#,
        ),
        (
            "site settings",
            "/wp-json/wp/v2/settings?_locale=user",
            None,
            r#"{"title":"Flour & Water","description":"Bread, baked slowly","posts_per_page":10}"#,
        ),
    ];
    for (what, path, method, json) in writes {
        let mut req = CleanRequest::post(format!("WordPress REST: {what}"), path)
            .headers(browser(Browser::ChromeMac, Dest::Fetch, Some(&editor)))
            .header("Origin", SITE)
            .header("X-WP-Nonce", "6f1e9c3a2d")
            .header("Cookie", cookies.clone());
        if let Some(method) = method {
            req = req.header("X-HTTP-Method-Override", method);
        }
        out.push(req.json(json));
    }
    out
}

/// A shop's JSON API, called by its mobile apps, its single-page front end and integrations.
fn json_api() -> Vec<CleanRequest> {
    let mut t = Tokens::new(23);
    let jwt = format!(
        "{}.{}.{}",
        base64(br#"{"alg":"RS256","typ":"JWT","kid":"2024-01"}"#).trim_end_matches('='),
        base64(br#"{"sub":"u_8f2k3l","iat":1705398000,"exp":1705401600,"scope":"orders:read orders:write"}"#)
            .trim_end_matches('=')
            .replace('+', "-")
            .replace('/', "_"),
        t.pick(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_", 86)
    );
    let clients = [
        "MyShop-iOS/3.14.0 (iPhone; iOS 17.2.1; Scale/3.00)",
        "okhttp/4.12.0",
        "axios/1.6.5",
        "python-requests/2.31.0",
        "Dart/3.2 (dart:io)",
        "PostmanRuntime/7.36.0",
        "Go-http-client/2.0",
    ];
    let gets = [
        "/api/v1/products?page=2&per_page=25&sort=-created_at&fields=id,name,price",
        "/api/v1/products/8731",
        "/api/v1/products/8731/reviews?rating_gte=4&limit=20",
        "/api/v1/orders?status=shipped&since=2024-01-01T00%3A00%3A00Z",
        "/api/v1/orders/A-1048-2291",
        "/api/v1/users/me",
        "/api/v1/search?q=t%C3%B6pfe&lang=de",
        "/api/v1/stores?lat=51.8985&lng=-8.4756&radius_km=25",
        "/api/v1/categories/tree?depth=3",
        "/api/v2/inventory?sku=SD-800-RYE&sku=SD-800-WHT&warehouse=cork-1",
    ];
    let mut out = Vec::new();
    for (i, path) in gets.iter().enumerate() {
        out.push(
            CleanRequest::get(format!("API read {path}"), *path)
                .headers(api_client(clients[i % clients.len()], &jwt)),
        );
    }
    let posts: [(&str, &str, &str); 13] = [
        (
            "create an order",
            "/api/v1/orders",
            r#"{
  "customer": {
    "name": "Zoë Åberg",
    "email": "zoe.aberg@example.se",
    "phone": "+46 70 123 45 67",
    "address": {"line1": "Storgatan 12", "line2": "lgh 1102", "city": "Malmö", "postcode": "211 34", "country": "SE"}
  },
  "items": [
    {"sku": "SD-800-RYE", "name": "Country sourdough, 800 g", "quantity": 2, "unit_price": "12.50"},
    {"sku": "CR-4", "name": "Croissants (4)", "quantity": 1, "unit_price": "9.80"}
  ],
  "currency": "EUR",
  "delivery_date": "2024-01-20",
  "notes": "Please ring twice - the bell's quiet. Thanks!",
  "gift": false
}"#,
        ),
        (
            "register a user",
            "/api/v1/users",
            r#"{"name":"田中 健太","display_name":"Kenta","city":"東京","locale":"ja-JP","bio":"パンが大好きです 🍞🥐","newsletter":true,"birthday":"1990-04-01"}"#,
        ),
        (
            "add to cart",
            "/api/v1/cart/items",
            r#"{"product_id":8731,"quantity":2,"options":{"size":"M","colour":"navy","engraving":"For Mum, with love x"}}"#,
        ),
        (
            "write a review",
            "/api/v1/products/8731/reviews",
            r#"{"rating":5,"title":"Lovely!","body":"Arrived in 2 days, still warm-ish. She said \"hello\" to the courier 😄 Would order again.","recommend":true}"#,
        ),
        (
            "log in",
            "/api/v1/auth/login",
            r#"{"email":"maeve@example.com","password":"Tr0ub4dor&3-horse!","remember":true}"#,
        ),
        (
            "refresh a token",
            "/api/v1/auth/refresh",
            r#"{"refresh_token":"rt_4f9a2c7e1b8d3f6a0c5e9b2d7f1a4c8e","client_id":"ios-app"}"#,
        ),
        (
            "analytics batch",
            "/api/v1/events",
            r#"[{"event":"page_view","path":"/shop/","ts":"2024-01-16T10:15:00.123Z"},{"event":"add_to_cart","sku":"SD-800-RYE","value":12.5,"ts":"2024-01-16T10:15:42.907Z"},{"event":"search","query":"rye bread","results":14,"ts":"2024-01-16T10:16:03.011Z"}]"#,
        ),
        (
            "update an address, PATCH through POST",
            "/api/v1/users/me/addresses/2",
            r#"{"line1":"Flat 2, 14 O'Connell St.","city":"Dún Laoghaire","postcode":"A96 X2Y3","default":true}"#,
        ),
        (
            "GraphQL query",
            "/graphql",
            r#"{"operationName":"Product","query":"query Product($id: ID!) { product(id: $id) { name slug price { amount currency } images(first: 3) { url altText } } }","variables":{"id":"8731"}}"#,
        ),
        (
            "booking with a price and dates",
            "/api/v1/bookings",
            r#"{"class":"Sourdough for beginners","date":"2024-03-15","start":"10:00","end":"13:30","seats":2,"price":"45.00","attendees":[{"name":"Ann-Marie Ní Bhriain"},{"name":"Łukasz Nowak"}],"dietary":"one vegetarian, no nuts"}"#,
        ),
        (
            "webhook from a payment provider",
            "/api/webhooks/payments",
            r#"{"id":"evt_3OZ9k2LkdIwHu7ix0aBc1234","type":"payment_intent.succeeded","created":1705398000,"data":{"object":{"id":"pi_3OZ9k2LkdIwHu7ix","amount":3480,"currency":"eur","metadata":{"order":"A-1048-2291"}}}}"#,
        ),
        (
            "Python client, ASCII-escaped JSON",
            "/api/v1/customers",
            r#"{"name": "Zo\u00eb \u00c5berg", "city": "\u6771\u4eac", "note": "\ud83c\udf5e weekly", "credit": 12.5, "tags": ["vip", "wholesale"]}"#,
        ),
        (
            "contact sync, nested arrays",
            "/api/v1/contacts/bulk",
            r#"{"contacts":[{"first":"Seán","last":"Ó Súilleabháin","emails":["sean@example.ie"],"phones":[{"type":"mobile","number":"+353 87 123 4567"}]},{"first":"Ingrid","last":"Bergström","emails":["ingrid.b@example.se","ib@example.com"],"phones":[]}],"source":"crm","dry_run":false}"#,
        ),
    ];
    for (i, (what, path, json)) in posts.iter().enumerate() {
        let mut req = CleanRequest::post(format!("API write: {what}"), *path)
            .headers(api_client(clients[(i + 2) % clients.len()], &jwt));
        if what.contains("PATCH through POST") {
            req = req.header("X-HTTP-Method-Override", "PATCH");
        }
        let content_type = match i % 3 {
            0 => "application/json",
            1 => "application/json; charset=utf-8",
            _ => "application/json;charset=UTF-8",
        };
        out.push(req.body(content_type, *json));
    }
    // The single-page front end's own calls, from a browser, with the session cookie.
    let spa = [
        ("GET", "/api/v1/cart", ""),
        ("POST", "/api/v1/cart/coupon", r#"{"code":"WELCOME-10"}"#),
        (
            "POST",
            "/api/v1/newsletter",
            r#"{"email":"anna+news@example.org","consent":true,"source":"footer"}"#,
        ),
    ];
    for (i, (method, path, json)) in spa.into_iter().enumerate() {
        let mut headers = browser(BROWSERS[i + 1], Dest::Fetch, Some(&format!("{SITE}/shop/")));
        headers.push(h("Cookie", visitor_cookies(40 + i as u64)));
        let req = CleanRequest::new(method, format!("front end fetch {method} {path}"), path)
            .headers(headers);
        out.push(if json.is_empty() {
            req
        } else {
            req.header("Origin", SITE).json(json)
        });
    }
    out
}

/// Ordinary HTML forms with ordinary punctuation, submitted by browsers.
fn html_forms() -> Vec<CleanRequest> {
    let forms: Vec<(&str, &str, Fields)> = vec![
        (
            "contact form",
            "/contact",
            vec![
                ("name", "Siobhán O'Brien"),
                ("email", "siobhan.obrien@example.ie"),
                ("phone", "+353 21 496 0000"),
                ("subject", "Missing loaf - order 4821?"),
                ("message", "Hi there,\r\n\r\nI ordered two loaves on 12/01/2024 (order 4821) but only one arrived. Could you check, please? Thanks!\r\n\r\nSiobhán"),
                ("consent", "on"),
            ],
        ),
        (
            "contact form with quotes",
            "/contact",
            vec![
                ("name", "Tom Murphy"),
                ("email", "tom.murphy@example.com"),
                ("subject", "A compliment!"),
                ("message", "My daughter said \"this is the best bread in the world\" - she's 6, so that's high praise. Keep it up!"),
            ],
        ),
        (
            "newsletter sign-up",
            "/newsletter/subscribe",
            vec![("email", "anna+news@example.org"), ("first_name", "Anna"), ("list", "weekly"), ("gdpr", "1")],
        ),
        (
            "checkout address",
            "/checkout",
            vec![
                ("billing_first_name", "Seán"),
                ("billing_last_name", "Ó Súilleabháin"),
                ("billing_company", "Smith & Sons Ltd."),
                ("billing_address_1", "Flat 2, 14 O'Connell St."),
                ("billing_address_2", "(ring bell 2)"),
                ("billing_city", "Dún Laoghaire"),
                ("billing_postcode", "A96 X2Y3"),
                ("billing_country", "IE"),
                ("billing_phone", "+353 87 123 4567"),
                ("billing_email", "sean.os@example.ie"),
                ("order_comments", "Leave at the back door, please - thanks! If nobody's in, the neighbours (no. 16) will take it."),
                ("payment_method", "stripe"),
                ("terms", "on"),
                ("woocommerce-process-checkout-nonce", "7c3e1f0a9b"),
                ("_wp_http_referer", "/?wc-ajax=update_order_review"),
            ],
        ),
        (
            "account registration",
            "/account/register",
            vec![
                ("username", "zoe_aberg"),
                ("email", "zoe.aberg@example.se"),
                ("password", "S3cure!pass-2024"),
                ("password_confirmation", "S3cure!pass-2024"),
                ("display_name", "Zoë Åberg"),
                ("terms", "accepted"),
            ],
        ),
        (
            "table booking",
            "/booking",
            vec![
                ("date", "15/03/2024"),
                ("time", "19:30"),
                ("guests", "4"),
                ("name", "Ann-Marie Ní Bhriain"),
                ("phone", "087 123 4567"),
                ("notes", "Window table if possible. One guest is coeliac, another is vegan (no dairy, no eggs)."),
            ],
        ),
        (
            "feedback",
            "/feedback",
            vec![
                ("rating", "5"),
                ("would_recommend", "yes"),
                ("comment", "Great service!! Would buy again :) 10/10, 5 stars, etc."),
                ("visit_date", "2024-01-14"),
            ],
        ),
        (
            "event RSVP",
            "/events/rsvp",
            vec![
                ("event_id", "77"),
                ("name", "Zoë Kravitz-Smith"),
                ("attending", "yes"),
                ("plus_one", "Jean-Luc"),
                ("dietary", "No nuts (allergy), otherwise anything!"),
            ],
        ),
        (
            "support ticket",
            "/support/ticket",
            vec![
                ("subject", "Can't log in after password reset"),
                ("category", "account"),
                ("priority", "normal"),
                ("message", "I tried \"Forgot password\" twice today (10:15 and 10:40) but the link says it's expired. I'm using Firefox on Windows 11. Any ideas?"),
                ("email", "j.doyle@example.com"),
            ],
        ),
        (
            "wholesale quote",
            "/wholesale/quote",
            vec![
                ("company", "Café Lune"),
                ("contact", "Hélène Dubois"),
                ("email", "helene@cafe-lune.example.fr"),
                ("budget", "€150–€200/week"),
                ("start", "2024-04-01"),
                ("message", "We're a small café (about 40 covers) looking for a daily order of sourdough, baguettes & croissants. Delivery before 7:30am - is that possible?"),
            ],
        ),
        (
            "donation",
            "/donate",
            vec![
                ("amount", "25.00"),
                ("currency", "EUR"),
                ("frequency", "monthly"),
                ("name", "Patrick O'Neill"),
                ("email", "p.oneill@example.ie"),
                ("gift_aid", "1"),
                ("message", "In memory of my grandmother, who taught me to bake. x"),
            ],
        ),
        (
            "product review",
            "/product/country-sourdough-800g/review",
            vec![
                ("rating", "4"),
                ("title", "Great crust, a bit sour for my kids"),
                ("review", "5/5 for the crust, 3/5 for the crumb - would recommend to anyone who likes a tangy loaf. Toasts really well!"),
                ("author", "Dónal"),
                ("email", "donal@example.ie"),
            ],
        ),
        (
            "job application (text only)",
            "/careers/apply",
            vec![
                ("position", "Baker (early shift, 5am-1pm)"),
                ("full_name", "Łukasz Nowak"),
                ("email", "lukasz.nowak@example.pl"),
                ("experience_years", "6"),
                ("cover_letter", "Dear team,\r\n\r\nI've baked professionally since 2018: first in Kraków, then in Dublin. I'm comfortable with laminated doughs, long fermentation and wood-fired ovens.\r\n\r\nKind regards,\r\nŁukasz"),
                ("right_to_work", "yes"),
            ],
        ),
        (
            "password change",
            "/account/password",
            vec![
                ("current_password", "old-Pa55word!"),
                ("new_password", "c0rrect-h0rse-battery-staple?"),
                ("new_password_confirm", "c0rrect-h0rse-battery-staple?"),
                ("_token", "Qm9keUZyb21UaGVGb3JtVG9rZW4xMjM0NTY"),
            ],
        ),
    ];
    let mut out = Vec::new();
    for (i, (what, path, fields)) in forms.into_iter().enumerate() {
        let b = BROWSERS[(i + 5) % BROWSERS.len()];
        let mut req = CleanRequest::post(format!("form post: {what}"), path)
            .headers(form_post(b, &format!("{SITE}{path}")));
        if i % 2 == 0 {
            req = req.header("Cookie", visitor_cookies(60 + i as u64));
        }
        out.push(req.form(&fields));
    }
    // A form posted by a script that encodes spaces as %20 and keeps its own punctuation.
    out.push(
        CleanRequest::post("form post with %20 spaces (fetch + encodeURIComponent)", "/contact")
            .headers(browser(Browser::ChromeWindows, Dest::Fetch, Some(&format!("{SITE}/contact"))))
            .header("Origin", SITE)
            .body(
                "application/x-www-form-urlencoded",
                encode_pairs(
                    &[
                        ("name", "Mary-Kate O'Sullivan"),
                        ("email", "mk.osullivan@example.com"),
                        ("message", "Hello! Are you open on St. Patrick's Day (17/03)? We'd like 2 dozen scones & some brown bread."),
                    ],
                    uri_component,
                ),
            ),
    );
    out
}

/// Front-end pages requested by visitors whose browsers carry 3 to 6 KB of cookies.
fn large_cookies() -> Vec<CleanRequest> {
    let visits: [(&str, Browser, bool); 8] = [
        ("/", Browser::ChromeWindows, false),
        ("/shop/", Browser::Safari, true),
        (
            "/product/country-sourdough-800g/",
            Browser::FirefoxLinux,
            false,
        ),
        ("/cart/", Browser::Edge, true),
        ("/my-account/", Browser::SafariIphone, true),
        ("/?s=how+to+bake+bread", Browser::ChromeAndroid, false),
        (
            "/2024/01/15/sourdough-starter-day-one/",
            Browser::ChromeMac,
            true,
        ),
        ("/checkout/", Browser::FirefoxWindows, false),
    ];
    let mut out = Vec::new();
    for (i, (path, b, heavy)) in visits.into_iter().enumerate() {
        let cookie = big_cookie_header(100 + i as u64, heavy);
        out.push(
            CleanRequest::get(
                format!("page {path} with {} bytes of cookies", cookie.len()),
                path,
            )
            .headers(browser(b, Dest::Document, Some(&format!("{SITE}/"))))
            .header("Cookie", cookie),
        );
    }
    // And a form post carrying them.
    let cookie = big_cookie_header(120, true);
    out.push(
        CleanRequest::post(
            format!("newsletter form with {} bytes of cookies", cookie.len()),
            "/newsletter/subscribe",
        )
        .headers(form_post(Browser::ChromeWindows, &format!("{SITE}/")))
        .header("Cookie", cookie)
        .form(&[("email", "niamh.kelly@example.ie"), ("list", "weekly")]),
    );
    out
}

/// A 4x4 RGB PNG, a real image's bytes.
const PNG: &[u8] = &[
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52,
    0x00, 0x00, 0x00, 0x04, 0x00, 0x00, 0x00, 0x04, 0x08, 0x02, 0x00, 0x00, 0x00, 0x26, 0x93, 0x09,
    0x29, 0x00, 0x00, 0x00, 0x32, 0x49, 0x44, 0x41, 0x54, 0x78, 0xda, 0x0d, 0xc7, 0x31, 0x01, 0x00,
    0x30, 0x08, 0x03, 0xc1, 0x0a, 0x7b, 0x4d, 0xcc, 0x88, 0x88, 0x88, 0xcc, 0x99, 0x11, 0x81, 0xac,
    0x72, 0xdb, 0xbd, 0x6d, 0x56, 0xac, 0xd9, 0xe1, 0xa5, 0x89, 0x88, 0xc9, 0x45, 0x8d, 0x84, 0x8c,
    0x2e, 0xd5, 0x94, 0x28, 0x53, 0xc3, 0x07, 0x71, 0x2a, 0x16, 0xd1, 0x1c, 0x07, 0x9a, 0xeb, 0x00,
    0x00, 0x00, 0x00, 0x49, 0x45, 0x4e, 0x44, 0xae, 0x42, 0x60, 0x82,
];

/// A one-page PDF: the header, its binary marker line, and a text stream.
fn pdf(text: &str) -> Vec<u8> {
    let stream = format!("BT /F1 18 Tf 72 720 Td ({text}) Tj ET");
    let mut pdf = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n".to_vec();
    pdf.extend_from_slice(
        format!(
            "1 0 obj\n<< /Type /Catalog /Pages 2 0 R >>\nendobj\n\
             2 0 obj\n<< /Type /Pages /Kids [3 0 R] /Count 1 >>\nendobj\n\
             3 0 obj\n<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents 4 0 R /Resources << /Font << /F1 5 0 R >> >> >>\nendobj\n\
             4 0 obj\n<< /Length {} >>\nstream\n{stream}\nendstream\nendobj\n\
             5 0 obj\n<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>\nendobj\n\
             trailer\n<< /Root 1 0 R /Size 6 >>\n%%EOF\n",
            stream.len()
        )
        .as_bytes(),
    );
    pdf
}

/// One part of a multipart/form-data body.
enum Part<'a> {
    Field(&'a str, &'a str),
    File {
        name: &'a str,
        filename: &'a str,
        content_type: &'a str,
        bytes: Vec<u8>,
    },
}

fn multipart(boundary: &str, parts: &[Part]) -> Vec<u8> {
    let mut body = Vec::new();
    for part in parts {
        body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        match part {
            Part::Field(name, value) => {
                body.extend_from_slice(
                    format!("Content-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n")
                        .as_bytes(),
                );
            }
            Part::File {
                name,
                filename,
                content_type,
                bytes,
            } => {
                body.extend_from_slice(
                    format!(
                        "Content-Disposition: form-data; name=\"{name}\"; filename=\"{filename}\"\r\n\
                         Content-Type: {content_type}\r\n\r\n"
                    )
                    .as_bytes(),
                );
                body.extend_from_slice(bytes);
                body.extend_from_slice(b"\r\n");
            }
        }
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    body
}

/// One upload: its sender (a browser on a page of the site, or `None`, an API client with curl)
/// and its parts.
struct Upload<'a> {
    what: &'a str,
    path: &'a str,
    from: Option<(Browser, String)>,
    boundary: &'a str,
    parts: Vec<Part<'a>>,
}

/// File uploads: WordPress's media uploader, an avatar, documents, spreadsheets, a CV.
fn uploads() -> Vec<CleanRequest> {
    let cookies = wp_admin_cookies();
    let txt = "Opening hours from 1 February:\r\nMon-Fri: 7:30-18:00\r\nSat: 8:00-16:00\r\nSun: closed\r\n\r\nBank holidays as on Sundays. Questions? Ask at the counter!\r\n";
    let csv = "name,email,city,orders,total\r\n\"Åberg, Zoë\",zoe.aberg@example.se,Malmö,3,37.50\r\n\"O'Brien, Siobhán\",siobhan.obrien@example.ie,Cork,12,148.20\r\nKenta Tanaka,kenta@example.jp,東京,1,12.50\r\n";
    let uploads = vec![
        Upload {
            what: "WordPress media upload (PNG)",
            path: "/wp-admin/async-upload.php",
            from: Some((Browser::ChromeMac, format!("{SITE}/wp-admin/upload.php?mode=grid"))),
            boundary: "----WebKitFormBoundaryx8Jv2m9QpLk3Zr0T",
            parts: vec![
                Part::Field("name", "crumb-shot.png"),
                Part::Field("action", "upload-attachment"),
                Part::Field("_wpnonce", "d41c8e2f7a"),
                Part::File {
                    name: "async-upload",
                    filename: "crumb-shot.png",
                    content_type: "image/png",
                    bytes: PNG.to_vec(),
                },
            ],
        },
        Upload {
            what: "WordPress media upload from the post editor (PDF)",
            path: "/wp-admin/async-upload.php",
            from: Some((Browser::FirefoxLinux, format!("{SITE}/wp-admin/post.php?post=123&action=edit"))),
            boundary: "---------------------------41184676334209821473528310",
            parts: vec![
                Part::Field("name", "price-list-2024.pdf"),
                Part::Field("post_id", "123"),
                Part::Field("_wpnonce", "d41c8e2f7a"),
                Part::Field("type", ""),
                Part::Field("tab", ""),
                Part::Field("short", "1"),
                Part::File {
                    name: "async-upload",
                    filename: "price-list-2024.pdf",
                    content_type: "application/pdf",
                    bytes: pdf("Price list 2024 - Flour & Water"),
                },
            ],
        },
        Upload {
            what: "avatar upload",
            path: "/account/avatar",
            from: Some((Browser::SafariIphone, format!("{SITE}/account/profile"))),
            boundary: "----WebKitFormBoundaryQ2a7cLm0R9sT4vWx",
            parts: vec![
                Part::Field("_token", "Qm9keUZyb21UaGVGb3JtVG9rZW4xMjM0NTY"),
                Part::File {
                    name: "avatar",
                    filename: "IMG_2041.png",
                    content_type: "image/png",
                    bytes: PNG.to_vec(),
                },
            ],
        },
        Upload {
            what: "plain-text notice",
            path: "/staff/notices",
            from: Some((Browser::Edge, format!("{SITE}/staff/notices/new"))),
            boundary: "----WebKitFormBoundaryH7k2pX9mZ3qR5tVb",
            parts: vec![
                Part::Field("title", "New opening hours (from 1 February)"),
                Part::Field("audience", "all-staff"),
                Part::File {
                    name: "attachment",
                    filename: "opening-hours.txt",
                    content_type: "text/plain",
                    bytes: txt.as_bytes().to_vec(),
                },
            ],
        },
        Upload {
            what: "customer import (CSV)",
            path: "/admin/customers/import",
            from: Some((Browser::FirefoxWindows, format!("{SITE}/admin/customers"))),
            boundary: "---------------------------9051914041544843365972754266",
            parts: vec![
                Part::Field("delimiter", ","),
                Part::Field("has_header", "1"),
                Part::Field("on_duplicate", "update"),
                Part::File {
                    name: "file",
                    filename: "customers-2024-01.csv",
                    content_type: "text/csv",
                    bytes: csv.as_bytes().to_vec(),
                },
            ],
        },
        Upload {
            what: "job application with a CV (PDF)",
            path: "/careers/apply",
            from: Some((Browser::ChromeWindows, format!("{SITE}/careers/baker"))),
            boundary: "----WebKitFormBoundary7MA4YWxkTrZu0gW",
            parts: vec![
                Part::Field("position", "Baker (early shift, 5am-1pm)"),
                Part::Field("full_name", "Łukasz Nowak"),
                Part::Field("email", "lukasz.nowak@example.pl"),
                Part::Field("cover_letter", "Dear team,\r\n\r\nI've baked professionally since 2018 - first in Kraków, then in Dublin. CV attached; references on request.\r\n\r\nKind regards,\r\nŁukasz"),
                Part::File {
                    name: "cv",
                    filename: "CV Lukasz Nowak 2024.pdf",
                    content_type: "application/pdf",
                    bytes: pdf("Lukasz Nowak - Curriculum Vitae"),
                },
            ],
        },
        Upload {
            what: "Contact Form 7 with an attachment",
            path: "/wp-json/contact-form-7/v1/contact-forms/123/feedback",
            from: Some((Browser::Safari, format!("{SITE}/contact-us/"))),
            boundary: "----WebKitFormBoundaryaB3dE5fG7hJ9kL1m",
            parts: vec![
                Part::Field("_wpcf7", "123"),
                Part::Field("_wpcf7_version", "5.8.4"),
                Part::Field("_wpcf7_locale", "en_US"),
                Part::Field("_wpcf7_unit_tag", "wpcf7-f123-p45-o1"),
                Part::Field("_wpcf7_container_post", "45"),
                Part::Field("your-name", "Hélène Dubois"),
                Part::Field("your-email", "helene@cafe-lune.example.fr"),
                Part::Field("your-subject", "Wholesale order (weekly)?"),
                Part::Field("your-message", "Bonjour! Our menu is attached - could you quote for the breads on page 2? Merci, Hélène"),
                Part::File {
                    name: "your-file",
                    filename: "menu-cafe-lune.pdf",
                    content_type: "application/pdf",
                    bytes: pdf("Cafe Lune - Menu"),
                },
            ],
        },
        Upload {
            what: "two photos in one post",
            path: "/gallery/upload",
            from: Some((Browser::ChromeAndroid, format!("{SITE}/gallery"))),
            boundary: "----WebKitFormBoundaryZ0y9X8w7V6u5T4s3",
            parts: vec![
                Part::Field("album", "Christmas market 2023"),
                Part::Field("caption", "Our stall - with Santa's helpers!"),
                Part::File {
                    name: "photos[]",
                    filename: "Screenshot 2023-12-16 at 11.02.37.png",
                    content_type: "image/png",
                    bytes: PNG.to_vec(),
                },
                Part::File {
                    name: "photos[]",
                    filename: "stall_2.png",
                    content_type: "image/png",
                    bytes: PNG.to_vec(),
                },
            ],
        },
        Upload {
            what: "API client uploading a receipt (curl)",
            path: "/api/v1/expenses/receipts",
            from: None,
            boundary: "------------------------d74496d66958873e",
            parts: vec![
                Part::Field("amount", "48.90"),
                Part::Field("date", "2024-01-12"),
                Part::Field("note", "Flour, 2 x 25 kg (rye & strong white)"),
                Part::File {
                    name: "receipt",
                    filename: "receipt.pdf",
                    content_type: "application/pdf",
                    bytes: pdf("Receipt 2024-0042 - EUR 48.90"),
                },
            ],
        },
    ];
    let mut out = Vec::new();
    for Upload {
        what,
        path,
        from,
        boundary,
        parts,
    } in uploads
    {
        let headers = match from {
            Some((b, referer)) => {
                let mut headers = browser(b, Dest::Fetch, Some(&referer));
                headers.push(h("Origin", SITE));
                if path.starts_with("/wp-admin/") {
                    headers.push(h("Cookie", cookies.clone()));
                }
                headers
            }
            None => vec![
                h("User-Agent", "curl/8.5.0"),
                h("Accept", "*/*"),
                h("Authorization", "Bearer 3b8f0c2e9a1d47f6b5e4c3d2a1f0e9d8"),
            ],
        };
        out.push(
            CleanRequest::post(format!("upload: {what}"), path)
                .headers(headers)
                .body(
                    &format!("multipart/form-data; boundary={boundary}"),
                    multipart(boundary, &parts),
                ),
        );
    }
    out
}

/// Stylesheets, scripts, images and fonts, many with WordPress's `?ver=` query.
fn static_assets() -> Vec<CleanRequest> {
    let assets: [(&str, Dest); 30] = [
        ("/wp-content/themes/twentytwentyfour/style.css?ver=1.0", Dest::Style),
        ("/wp-includes/css/dist/block-library/style.min.css?ver=6.4.2", Dest::Style),
        ("/wp-includes/css/dashicons.min.css?ver=6.4.2", Dest::Style),
        ("/wp-content/plugins/woocommerce/assets/css/woocommerce.css?ver=8.4.0", Dest::Style),
        ("/wp-content/plugins/contact-form-7/includes/css/styles.css?ver=5.8.4", Dest::Style),
        ("/static/css/main.8c1e2b7f.css", Dest::Style),
        ("/wp-includes/js/jquery/jquery.min.js?ver=3.7.1", Dest::Script),
        ("/wp-includes/js/jquery/jquery-migrate.min.js?ver=3.4.1", Dest::Script),
        ("/wp-includes/js/wp-emoji-release.min.js?ver=6.4.2", Dest::Script),
        ("/wp-content/plugins/contact-form-7/includes/js/index.js?ver=5.8.4", Dest::Script),
        ("/wp-content/plugins/woocommerce/assets/js/frontend/cart-fragments.min.js?ver=8.4.0", Dest::Script),
        ("/assets/app.3f9a1c.js", Dest::Script),
        ("/assets/app.3f9a1c.js.map", Dest::Script),
        ("/assets/vendor~main.5d2e8b.chunk.js", Dest::Script),
        ("/wp-content/uploads/2024/01/sourdough-1024x683.jpg", Dest::Image),
        ("/wp-content/uploads/2024/01/sourdough-300x200.webp", Dest::Image),
        ("/wp-content/uploads/2023/12/stollen-scaled.jpeg", Dest::Image),
        ("/wp-content/uploads/2023/12/stollen-150x150.png", Dest::Image),
        ("/wp-includes/images/w-logo-blue-white-bg.png", Dest::Image),
        ("/wp-content/themes/twentytwentyfour/assets/images/building-exterior.webp", Dest::Image),
        ("/img/logo.svg", Dest::Image),
        ("/favicon.ico", Dest::Image),
        ("/apple-touch-icon.png", Dest::Image),
        ("/wp-content/uploads/2024/01/cropped-icon-32x32.png", Dest::Image),
        ("/wp-content/themes/twentytwentyfour/assets/fonts/inter/Inter-VariableFont_slnt,wght.woff2", Dest::Font),
        ("/wp-content/themes/twentytwentyfour/assets/fonts/cardo/cardo_normal_400.woff2", Dest::Font),
        ("/wp-includes/fonts/dashicons.woff2?d9a6d7ad2fb4cd25f5a8f2b0a3c9e6e0", Dest::Font),
        ("/fonts/roboto-v30-latin-regular.woff2", Dest::Font),
        ("/fonts/OpenSans-Bold.ttf", Dest::Font),
        ("/manifest.webmanifest", Dest::Fetch),
    ];
    let mut out = Vec::new();
    for (i, (path, dest)) in assets.into_iter().enumerate() {
        let b = BROWSERS[i % BROWSERS.len()];
        let referer = if dest == Dest::Font {
            format!("{SITE}/wp-content/themes/twentytwentyfour/style.css?ver=1.0")
        } else {
            format!("{SITE}/2024/01/15/sourdough-starter-day-one/")
        };
        let mut req = CleanRequest::get(format!("static asset {path}"), path).headers(browser(
            b,
            dest,
            Some(&referer),
        ));
        if dest == Dest::Font {
            req = req.header("Origin", SITE);
        }
        out.push(req);
    }
    out
}

/// HEAD checks by monitors and link checkers, and OPTIONS preflights and probes.
fn head_and_options() -> Vec<CleanRequest> {
    let mut out = Vec::new();
    let heads = [
        (
            "/",
            "Mozilla/5.0+(compatible; UptimeRobot/2.0; http://www.uptimerobot.com/)",
        ),
        (
            "/wp-login.php",
            "Pingdom.com_bot_version_1.4_(http://www.pingdom.com/)",
        ),
        (
            "/wp-content/uploads/2023/12/menu.pdf",
            "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0",
        ),
        ("/shop/", "curl/8.5.0"),
        (
            "/2024/01/15/sourdough-starter-day-one/",
            "W3C-checklink/5.0.0 libwww-perl/6.72",
        ),
        (
            "/feed/",
            "Feedly/1.0 (+http://www.feedly.com/fetcher.html; 12 subscribers; )",
        ),
        (
            "/wp-content/uploads/2024/01/sourdough-1024x683.jpg",
            "Mozilla/5.0 (compatible; Googlebot-Image/1.0)",
        ),
        ("/api/v1/health", "kube-probe/1.28"),
    ];
    for (path, ua) in heads {
        out.push(
            CleanRequest::new("HEAD", format!("HEAD {path} ({ua})"), path)
                .headers(vec![h("User-Agent", ua), h("Accept", "*/*")]),
        );
    }
    let preflights = [
        ("/api/v1/orders", "POST", "authorization,content-type"),
        (
            "/api/v1/cart/items",
            "POST",
            "content-type,x-requested-with",
        ),
        ("/graphql", "POST", "content-type,apollographql-client-name"),
        ("/wp-json/wp/v2/posts", "GET", "x-wp-nonce"),
    ];
    for (i, (path, method, requested)) in preflights.into_iter().enumerate() {
        let b = [
            Browser::ChromeWindows,
            Browser::FirefoxLinux,
            Browser::Safari,
            Browser::Edge,
        ][i];
        out.push(
            CleanRequest::new(
                "OPTIONS",
                format!("CORS preflight for {method} {path}"),
                path,
            )
            .headers(vec![
                h("User-Agent", b.user_agent()),
                h("Accept", "*/*"),
                h("Accept-Language", b.language()),
                h("Accept-Encoding", "gzip, deflate, br"),
                h("Origin", "https://app.example.com"),
                h("Access-Control-Request-Method", method),
                h("Access-Control-Request-Headers", requested),
                h("Referer", "https://app.example.com/"),
                h("Sec-Fetch-Dest", "empty"),
                h("Sec-Fetch-Mode", "cors"),
                h("Sec-Fetch-Site", "same-site"),
            ]),
        );
    }
    out.push(
        CleanRequest::new(
            "OPTIONS",
            "OPTIONS on the WordPress REST index",
            "/wp-json/",
        )
        .headers(vec![
            h("User-Agent", "PostmanRuntime/7.36.0"),
            h("Accept", "*/*"),
        ]),
    );
    out.push(
        CleanRequest::new("OPTIONS", "OPTIONS on the home page by a monitor", "/")
            .headers(vec![h("User-Agent", "curl/8.5.0"), h("Accept", "*/*")]),
    );
    out
}

/// Revalidations: If-None-Match and If-Modified-Since on pages, assets and feeds.
fn conditional_gets() -> Vec<CleanRequest> {
    let checks: [(&str, Dest, Option<&str>, Option<&str>); 10] = [
        (
            "/wp-content/themes/twentytwentyfour/style.css?ver=1.0",
            Dest::Style,
            Some("\"5e1f-60c3b2a1d4e80\""),
            Some("Wed, 10 Jan 2024 08:00:00 GMT"),
        ),
        (
            "/wp-includes/js/jquery/jquery.min.js?ver=3.7.1",
            Dest::Script,
            Some("\"1547a-5f9c2e1b7a640\""),
            None,
        ),
        (
            "/wp-content/uploads/2024/01/sourdough-1024x683.jpg",
            Dest::Image,
            None,
            Some("Mon, 15 Jan 2024 09:12:44 GMT"),
        ),
        ("/", Dest::Document, Some("W/\"a3f9c1e7b2d4\""), None),
        (
            "/2024/01/15/sourdough-starter-day-one/",
            Dest::Document,
            Some("W/\"9b8e7d6c5f4a-gzip\""),
            Some("Tue, 16 Jan 2024 10:00:03 GMT"),
        ),
        (
            "/assets/app.3f9a1c.js",
            Dest::Script,
            Some("\"3f9a1c\""),
            None,
        ),
        (
            "/img/logo.svg",
            Dest::Image,
            Some("\"64a1b2c3-1f2e\", \"64a1b2c3-1f2f\""),
            None,
        ),
        (
            "/fonts/roboto-v30-latin-regular.woff2",
            Dest::Font,
            None,
            Some("Thu, 01 Jun 2023 12:00:00 GMT"),
        ),
        (
            "/wp-json/wp/v2/posts?per_page=10&_embed",
            Dest::Fetch,
            Some("W/\"c0ffee42\""),
            None,
        ),
        (
            "/favicon.ico",
            Dest::Image,
            Some("\"47e-5c2a1b0f\""),
            Some("Sat, 02 Dec 2023 18:30:00 GMT"),
        ),
    ];
    let mut out = Vec::new();
    for (i, (path, dest, etag, since)) in checks.into_iter().enumerate() {
        let b = BROWSERS[(i + 2) % BROWSERS.len()];
        let mut req = CleanRequest::get(format!("conditional GET {path}"), path)
            .headers(browser(b, dest, Some(&format!("{SITE}/"))))
            .header("Cache-Control", "max-age=0");
        if let Some(etag) = etag {
            req = req.header("If-None-Match", etag);
        }
        if let Some(since) = since {
            req = req.header("If-Modified-Since", since);
        }
        out.push(req);
    }
    // A feed reader revalidating.
    out.push(
        CleanRequest::get("feed reader revalidating /feed/", "/feed/").headers(vec![
            h(
                "User-Agent",
                "NetNewsWire (RSS Reader; https://netnewswire.com/)",
            ),
            h(
                "Accept",
                "application/rss+xml, application/atom+xml, application/xml, text/xml, */*;q=0.5",
            ),
            h("Accept-Encoding", "gzip, deflate"),
            h("If-None-Match", "W/\"f3e2d1c0b9a8\""),
            h("If-Modified-Since", "Tue, 16 Jan 2024 10:00:03 GMT"),
        ]),
    );
    out
}

/// Range requests: media players seeking, PDF viewers, resumed downloads.
fn ranges() -> Vec<CleanRequest> {
    let mut out = Vec::new();
    let video = [
        ("bytes=0-", Browser::ChromeWindows),
        ("bytes=1048576-", Browser::FirefoxLinux),
        ("bytes=0-1048575", Browser::Safari),
        ("bytes=5242880-6291455", Browser::Edge),
    ];
    for (range, b) in video {
        out.push(
            CleanRequest::get(
                format!("video seek, Range: {range}"),
                "/wp-content/uploads/2024/01/shaping-a-batard.mp4",
            )
            .headers(browser(
                b,
                Dest::Video,
                Some(&format!("{SITE}/2024/01/15/sourdough-starter-day-one/")),
            ))
            .header("Range", range),
        );
    }
    out.push(
        CleanRequest::get(
            "iPhone media player, first two bytes",
            "/wp-content/uploads/2024/01/podcast-ep12.mp3",
        )
        .headers(vec![
            h(
                "User-Agent",
                "AppleCoreMedia/1.0.0.21C62 (iPhone; U; CPU OS 17_2_1 like Mac OS X; en_gb)",
            ),
            h("Accept", "*/*"),
            h("Accept-Language", "en-GB,en;q=0.9"),
            h("Accept-Encoding", "identity"),
            h(
                "X-Playback-Session-Id",
                "5E1A2B3C-4D5E-6F70-8192-A3B4C5D6E7F8",
            ),
            h("Range", "bytes=0-1"),
        ]),
    );
    out.push(
        CleanRequest::get(
            "PDF viewer fetching a chunk",
            "/wp-content/uploads/2023/12/menu.pdf",
        )
        .headers(browser(
            Browser::FirefoxWindows,
            Dest::Fetch,
            Some(&format!("{SITE}/wp-content/uploads/2023/12/menu.pdf")),
        ))
        .header("Range", "bytes=65536-131071"),
    );
    out.push(
        CleanRequest::get(
            "resumed download with If-Range",
            "/downloads/recipe-book-2024.pdf",
        )
        .headers(vec![
            h("User-Agent", "Wget/1.21.4"),
            h("Accept", "*/*"),
            h("Accept-Encoding", "identity"),
            h("Range", "bytes=5242880-"),
            h("If-Range", "\"4a1f00-60f2b3c4d5e6f\""),
        ]),
    );
    out.push(
        CleanRequest::get(
            "last 500 bytes (suffix range)",
            "/downloads/recipe-book-2024.pdf",
        )
        .headers(vec![
            h("User-Agent", "curl/8.5.0"),
            h("Accept", "*/*"),
            h("Range", "bytes=-500"),
        ]),
    );
    out
}
