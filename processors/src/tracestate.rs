//! The W3C Trace Context `tracestate` grammar, for both samplers: which
//! keys and values are valid ([`valid_key`], [`valid_value`]), and reading
//! one key ([`get`]) with the validation the Collector's `trace_state`
//! policy gets from the OpenTelemetry Go API's `ParseTraceState`: a list that
//! is not valid as a whole (a bad key or value, a duplicate key, more than 32
//! members) has no keys at all.

/// Most list members a `tracestate` may hold.
pub const MAX_MEMBERS: usize = 32;

/// The value of `key` in `tracestate`, if the list is valid and has it.
pub fn get<'a>(tracestate: &'a str, key: &str) -> Option<&'a str> {
    let mut found = None;
    let mut members = 0;
    let mut seen: [&str; MAX_MEMBERS] = [""; MAX_MEMBERS];
    for member in tracestate.split(',') {
        if member.is_empty() {
            continue;
        }
        let (k, v) = member.split_once('=')?;
        let (k, v) = (k.trim_start_matches([' ', '\t']), v.trim_end_matches([' ', '\t']));
        if !valid_key(k) || !valid_value(v) || members == MAX_MEMBERS || seen[..members].contains(&k) {
            return None;
        }
        seen[members] = k;
        members += 1;
        if k == key {
            found = Some(v);
        }
    }
    found
}

fn key_char(c: u8) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'_' | b'-' | b'*' | b'/')
}

/// `[a-z][_0-9a-z-*/]{0,255}`, or `tenant@system` with
/// `[a-z0-9][_0-9a-z-*/]{0,240}` and `[a-z][_0-9a-z-*/]{0,13}`.
pub fn valid_key(k: &str) -> bool {
    let b = k.as_bytes();
    match k.split_once('@') {
        None => {
            !b.is_empty() && b.len() <= 256 && b[0].is_ascii_lowercase() && b.iter().all(|c| key_char(*c))
        }
        Some((tenant, system)) => {
            let (t, s) = (tenant.as_bytes(), system.as_bytes());
            !t.is_empty()
                && t.len() <= 241
                && (t[0].is_ascii_lowercase() || t[0].is_ascii_digit())
                && t.iter().all(|c| key_char(*c))
                && !s.is_empty()
                && s.len() <= 14
                && s[0].is_ascii_lowercase()
                && s.iter().all(|c| key_char(*c))
        }
    }
}

/// 1–256 printable ASCII characters other than `,` and `=`, not ending in a space.
pub fn valid_value(v: &str) -> bool {
    let b = v.as_bytes();
    !b.is_empty()
        && b.len() <= 256
        && b.iter().all(|c| (0x20..=0x7e).contains(c) && *c != b',' && *c != b'=')
        && b[b.len() - 1] != b' '
}

#[cfg(test)]
mod tests {
    use super::get;

    #[test]
    fn reads_valid_lists_only() {
        assert_eq!(get("a=1,b=2", "b"), Some("2"));
        assert_eq!(get(" a=1 , b=2\t", "a"), Some("1"));
        assert_eq!(get("a=1,,b=2", "b"), Some("2"));
        assert_eq!(get("t@s=x", "t@s"), Some("x"));
        assert_eq!(get("a=1", "b"), None);
        for bad in ["A=1,b=2", "a=1,a=2,b=2", "b=2,nokey", "b=2,a=x=y", "b=2,a=", "1a=2,b=2"] {
            assert_eq!(get(bad, "b"), None, "{bad}");
        }
        let many: Vec<String> = (0..33).map(|i| format!("k{i}=v")).collect();
        assert_eq!(get(&many.join(","), "k0"), None, "33 members");
        assert_eq!(get(&many[..32].join(","), "k0"), Some("v"), "32 members");
    }
}
