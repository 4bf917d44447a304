//! A site's redirects: the canonical form of its name (with or without `www.`), then its path
//! rules, first match wins. The query is kept; the port the client used is kept on a canonical
//! redirect (the other name is served by this same Porter).

use crate::proxy::phases::answer::Own;
use http::{HeaderValue, Request, StatusCode};
use porter_store::{Canonical, Features};

/// The redirect `req` (for `host`) gets, if any.
pub(crate) fn answer<B>(
    features: &Features,
    req: &Request<B>,
    host: &str,
    https: bool,
) -> Option<Own> {
    if features.canonical.is_none() && features.redirects.is_empty() {
        return None;
    }
    let uri = req.uri();
    let path = uri.path();
    let query = uri.query();
    if let Some(canonical) = features.canonical {
        let other = match canonical {
            Canonical::Apex => host.strip_prefix("www.").map(str::to_owned),
            Canonical::Www => (!host.starts_with("www.")).then(|| format!("www.{host}")),
        };
        if let Some(other) = other {
            let scheme = if https { "https" } else { "http" };
            let port = client_port(req)
                .map(|p| format!(":{p}"))
                .unwrap_or_default();
            let rest = uri.path_and_query().map_or("/", |p| p.as_str());
            return Some(to(
                StatusCode::MOVED_PERMANENTLY,
                format!("{scheme}://{other}{port}{rest}"),
            ));
        }
    }
    let rule = features.redirects.iter().find(|r| {
        if r.prefix {
            path.starts_with(&r.from)
        } else {
            path == r.from
        }
    })?;
    let mut location = rule.to.clone();
    if rule.prefix {
        location.push_str(&path[rule.from.len()..]);
    }
    if let Some(query) = query {
        location.push(if location.contains('?') { '&' } else { '?' });
        location.push_str(query);
    }
    let status = StatusCode::from_u16(rule.status).unwrap_or(StatusCode::MOVED_PERMANENTLY);
    Some(to(status, location))
}

fn to(status: StatusCode, location: String) -> Own {
    match HeaderValue::from_str(&location) {
        Ok(location) => Own::Redirect { status, location },
        Err(_) => Own::BadTarget,
    }
}

/// The port in the authority the client used, if it named one.
fn client_port<B>(req: &Request<B>) -> Option<u16> {
    if let Some(port) = req.uri().port_u16() {
        return Some(port);
    }
    let host = req.headers().get(http::header::HOST)?.to_str().ok()?;
    let (_, port) = host.rsplit_once(':')?;
    // `[::1]` alone has colons too: a port follows the closing bracket.
    if port.ends_with(']') {
        return None;
    }
    port.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use porter_store::Redirect;

    fn location(
        f: &Features,
        host_header: &str,
        target: &str,
        https: bool,
    ) -> Option<(u16, String)> {
        let req = Request::get(target)
            .header("host", host_header)
            .body(())
            .unwrap();
        let host = host_header.split(':').next().unwrap();
        match answer(f, &req, host, https)? {
            Own::Redirect { status, location } => {
                Some((status.as_u16(), location.to_str().unwrap().to_owned()))
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn canonical_names_keep_scheme_port_path_and_query() {
        let apex = Features {
            canonical: Some(Canonical::Apex),
            ..Features::default()
        };
        assert_eq!(
            location(&apex, "www.example.test:8443", "/a/b?c=1", true),
            Some((301, "https://example.test:8443/a/b?c=1".into()))
        );
        assert_eq!(location(&apex, "example.test", "/", false), None);
        let www = Features {
            canonical: Some(Canonical::Www),
            ..Features::default()
        };
        assert_eq!(
            location(&www, "example.test", "/x", false),
            Some((301, "http://www.example.test/x".into()))
        );
        assert_eq!(location(&www, "www.example.test", "/x", false), None);
    }

    #[test]
    fn rules_match_exact_or_prefix_first_wins() {
        let f = Features {
            redirects: [
                "/old/* /new/ 308",
                "/page /other.html 302",
                "/* https://elsewhere.test/ 301",
            ]
            .iter()
            .map(|r| Redirect::parse(r).unwrap())
            .collect(),
            ..Features::default()
        };
        assert_eq!(
            location(&f, "a.test", "/old/x/y?q=1", true),
            Some((308, "/new/x/y?q=1".into()))
        );
        assert_eq!(
            location(&f, "a.test", "/page", true),
            Some((302, "/other.html".into()))
        );
        assert_eq!(
            location(&f, "a.test", "/page/2", true),
            Some((301, "https://elsewhere.test/page/2".into()))
        );
    }
}
