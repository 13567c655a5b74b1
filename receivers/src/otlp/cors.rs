//! CORS for browser SDKs, with the OpenTelemetry Collector's rules:
//! `allowed_origins` entries match an `Origin` exactly (ignoring case) or
//! with one `*` standing for any run of characters (`https://*.example.com`);
//! a lone `*` allows every origin. The CORS-safelisted request headers and
//! `X-Requested-With` are always allowed; `allowed_headers` adds more, and
//! `*` allows any.
//!
//! A matched origin is echoed back with `Access-Control-Allow-Credentials:
//! true`, as the Collector does (the JavaScript SDK's `sendBeacon` sends
//! credentials); a lone `*` answers `*` without credentials, which is the
//! only form browsers accept for it.
//!
//! Pure header logic; it must not depend on the servers.

use super::CorsConfig;
use axum::http::header::{
    ACCESS_CONTROL_ALLOW_CREDENTIALS, ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS,
    ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_MAX_AGE, ACCESS_CONTROL_REQUEST_HEADERS,
    ACCESS_CONTROL_REQUEST_METHOD, ORIGIN, VARY,
};
use axum::http::{HeaderMap, HeaderValue};

/// Request headers a browser may send without the server listing them.
const ALWAYS_ALLOWED_HEADERS: &[&str] =
    &["accept", "accept-language", "content-language", "content-type", "x-requested-with"];

#[derive(Clone, Debug, PartialEq)]
enum OriginPattern {
    Any,
    Exact(String),
    Wildcard { prefix: String, suffix: String },
}

impl OriginPattern {
    fn parse(s: &str) -> OriginPattern {
        let s = s.trim().to_ascii_lowercase();
        if s == "*" {
            return OriginPattern::Any;
        }
        match s.split_once('*') {
            Some((prefix, suffix)) => {
                OriginPattern::Wildcard { prefix: prefix.to_string(), suffix: suffix.to_string() }
            }
            None => OriginPattern::Exact(s),
        }
    }

    /// `origin` must already be lowercase.
    fn matches(&self, origin: &str) -> bool {
        match self {
            OriginPattern::Any => true,
            OriginPattern::Exact(o) => o == origin,
            OriginPattern::Wildcard { prefix, suffix } => {
                origin.len() >= prefix.len() + suffix.len()
                    && origin.starts_with(prefix.as_str())
                    && origin.ends_with(suffix.as_str())
            }
        }
    }
}

/// How an allowed origin is answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Allowed {
    /// `Access-Control-Allow-Origin: *`.
    Any,
    /// The request's origin, echoed with credentials allowed.
    Echo,
}

/// The compiled CORS policy.
#[derive(Clone, Debug)]
pub struct Cors {
    origins: Vec<OriginPattern>,
    any_header: bool,
    headers: Vec<String>,
    max_age: Option<u64>,
}

/// Why a preflight was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Denied(pub String);

impl Cors {
    /// The policy, or `None` when no origins are listed (CORS disabled).
    pub fn new(config: &CorsConfig) -> Option<Cors> {
        if config.allowed_origins.is_empty() {
            return None;
        }
        let any_header = config.allowed_headers.iter().any(|h| h.trim() == "*");
        let headers = config.allowed_headers.iter().map(|h| h.trim().to_ascii_lowercase()).collect();
        Some(Cors {
            origins: config.allowed_origins.iter().map(|o| OriginPattern::parse(o)).collect(),
            any_header,
            headers,
            max_age: config.max_age,
        })
    }

    fn allowed(&self, origin: &str) -> Option<Allowed> {
        let lower = origin.to_ascii_lowercase();
        let mut found = None;
        for p in &self.origins {
            if p.matches(&lower) {
                match p {
                    OriginPattern::Any => found = Some(Allowed::Any),
                    _ => return Some(Allowed::Echo),
                }
            }
        }
        found
    }

    fn header_allowed(&self, name: &str) -> bool {
        let name = name.trim().to_ascii_lowercase();
        name.is_empty()
            || self.any_header
            || ALWAYS_ALLOWED_HEADERS.contains(&name.as_str())
            || self.headers.contains(&name)
    }

    /// Whether `headers` are a CORS preflight (`OPTIONS` with an `Origin`
    /// and an `Access-Control-Request-Method`).
    pub fn is_preflight(headers: &HeaderMap) -> bool {
        headers.contains_key(ORIGIN) && headers.contains_key(ACCESS_CONTROL_REQUEST_METHOD)
    }

    /// The response headers of an allowed preflight, or why it is refused.
    pub fn preflight(&self, request: &HeaderMap) -> Result<HeaderMap, Denied> {
        let origin = request.get(ORIGIN).ok_or_else(|| Denied("no Origin header".into()))?;
        let origin_str = origin.to_str().map_err(|_| Denied("the Origin header is not text".into()))?;
        let allowed =
            self.allowed(origin_str).ok_or_else(|| Denied(format!("origin {origin_str} is not allowed")))?;
        let method = request.get(ACCESS_CONTROL_REQUEST_METHOD).map(HeaderValue::as_bytes);
        if method != Some(b"POST".as_slice()) {
            return Err(Denied("only POST is allowed".into()));
        }
        let requested = request.get(ACCESS_CONTROL_REQUEST_HEADERS);
        if let Some(requested) = requested {
            let list = requested
                .to_str()
                .map_err(|_| Denied("Access-Control-Request-Headers is not text".into()))?;
            if let Some(bad) = list.split(',').find(|h| !self.header_allowed(h)) {
                return Err(Denied(format!("header {} is not allowed", bad.trim())));
            }
        }
        let mut out = HeaderMap::new();
        set_origin(&mut out, allowed, origin);
        out.insert(ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("POST"));
        if let Some(requested) = requested {
            out.insert(ACCESS_CONTROL_ALLOW_HEADERS, requested.clone());
        }
        if let Some(age) = self.max_age {
            out.insert(ACCESS_CONTROL_MAX_AGE, HeaderValue::from(age));
        }
        out.append(VARY, HeaderValue::from_static("Origin"));
        out.append(VARY, HeaderValue::from_static("Access-Control-Request-Method"));
        out.append(VARY, HeaderValue::from_static("Access-Control-Request-Headers"));
        Ok(out)
    }

    /// Adds the CORS headers of an actual (non-preflight) response, if the
    /// request came from an allowed origin.
    pub fn decorate(&self, request: &HeaderMap, response: &mut HeaderMap) {
        let Some(origin) = request.get(ORIGIN) else {
            return;
        };
        response.append(VARY, HeaderValue::from_static("Origin"));
        let Ok(origin_str) = origin.to_str() else {
            return;
        };
        if let Some(allowed) = self.allowed(origin_str) {
            set_origin(response, allowed, origin);
        }
    }
}

fn set_origin(out: &mut HeaderMap, allowed: Allowed, origin: &HeaderValue) {
    match allowed {
        Allowed::Any => {
            out.insert(ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
        }
        Allowed::Echo => {
            out.insert(ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
            out.insert(ACCESS_CONTROL_ALLOW_CREDENTIALS, HeaderValue::from_static("true"));
        }
    }
}

/// Problems with a CORS config, for validation.
pub fn problems(config: &CorsConfig) -> Vec<String> {
    let mut out = Vec::new();
    for o in &config.allowed_origins {
        if o.matches('*').count() > 1 {
            out.push(format!(
                "protocols.http.cors.allowed_origins: `{o}` has more than one `*`; use one wildcard per origin"
            ));
        }
        if o.trim().is_empty() {
            out.push("protocols.http.cors.allowed_origins: an origin is empty".to_string());
        }
    }
    if config.allowed_origins.is_empty() && (!config.allowed_headers.is_empty() || config.max_age.is_some()) {
        out.push(
            "protocols.http.cors: allowed_headers and max_age have no effect without allowed_origins"
                .to_string(),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cors(origins: &[&str], headers: &[&str]) -> Cors {
        Cors::new(&CorsConfig {
            allowed_origins: origins.iter().map(|s| s.to_string()).collect(),
            allowed_headers: headers.iter().map(|s| s.to_string()).collect(),
            max_age: Some(600),
        })
        .unwrap()
    }

    fn preflight(c: &Cors, origin: &str, method: &str, headers: Option<&str>) -> Result<HeaderMap, Denied> {
        let mut h = HeaderMap::new();
        h.insert(ORIGIN, HeaderValue::from_str(origin).unwrap());
        h.insert(ACCESS_CONTROL_REQUEST_METHOD, HeaderValue::from_str(method).unwrap());
        if let Some(v) = headers {
            h.insert(ACCESS_CONTROL_REQUEST_HEADERS, HeaderValue::from_str(v).unwrap());
        }
        c.preflight(&h)
    }

    #[test]
    fn origins_match_exactly_or_by_wildcard() {
        let c = cors(&["https://app.example.org", "https://*.example.com"], &[]);
        assert_eq!(c.allowed("https://app.example.org"), Some(Allowed::Echo));
        assert_eq!(c.allowed("HTTPS://APP.EXAMPLE.ORG"), Some(Allowed::Echo));
        assert_eq!(c.allowed("https://a.b.example.com"), Some(Allowed::Echo));
        assert_eq!(c.allowed("https://example.com"), None);
        assert_eq!(c.allowed("http://a.example.com"), None);
        assert_eq!(c.allowed("https://evil.org"), None);
        assert_eq!(cors(&["*"], &[]).allowed("https://any.where"), Some(Allowed::Any));
        assert!(Cors::new(&CorsConfig::default()).is_none());
    }

    #[test]
    fn an_allowed_preflight_gets_every_header() {
        let c = cors(&["https://*.example.com"], &["X-Custom"]);
        let h = preflight(&c, "https://app.example.com", "POST", Some("content-type, x-custom")).unwrap();
        assert_eq!(h[ACCESS_CONTROL_ALLOW_ORIGIN], "https://app.example.com");
        assert_eq!(h[ACCESS_CONTROL_ALLOW_CREDENTIALS], "true");
        assert_eq!(h[ACCESS_CONTROL_ALLOW_METHODS], "POST");
        assert_eq!(h[ACCESS_CONTROL_ALLOW_HEADERS], "content-type, x-custom");
        assert_eq!(h[ACCESS_CONTROL_MAX_AGE], "600");
        let h = preflight(&cors(&["*"], &[]), "https://x.org", "POST", None).unwrap();
        assert_eq!(h[ACCESS_CONTROL_ALLOW_ORIGIN], "*");
        assert!(!h.contains_key(ACCESS_CONTROL_ALLOW_CREDENTIALS));
    }

    #[test]
    fn preflights_are_refused_for_other_origins_methods_and_headers() {
        let c = cors(&["https://app.example.com"], &[]);
        assert!(preflight(&c, "https://evil.org", "POST", None).is_err());
        assert!(preflight(&c, "https://app.example.com", "PUT", None).is_err());
        assert!(preflight(&c, "https://app.example.com", "POST", Some("x-secret")).is_err());
        assert!(
            preflight(
                &cors(&["https://app.example.com"], &["*"]),
                "https://app.example.com",
                "POST",
                Some("x-secret")
            )
            .is_ok()
        );
    }

    #[test]
    fn actual_responses_carry_the_origin_only_when_allowed() {
        let c = cors(&["https://app.example.com"], &[]);
        let mut req = HeaderMap::new();
        req.insert(ORIGIN, HeaderValue::from_static("https://evil.org"));
        let mut resp = HeaderMap::new();
        c.decorate(&req, &mut resp);
        assert!(!resp.contains_key(ACCESS_CONTROL_ALLOW_ORIGIN));
        req.insert(ORIGIN, HeaderValue::from_static("https://app.example.com"));
        c.decorate(&req, &mut resp);
        assert_eq!(resp[ACCESS_CONTROL_ALLOW_ORIGIN], "https://app.example.com");
    }

    #[test]
    fn config_problems() {
        let c = CorsConfig { allowed_origins: vec!["https://*.*.com".into()], ..Default::default() };
        assert_eq!(problems(&c).len(), 1);
        let c = CorsConfig { max_age: Some(1), ..Default::default() };
        assert_eq!(problems(&c).len(), 1);
    }
}
