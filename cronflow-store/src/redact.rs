//! Database URLs as they may appear in errors and logs: without their password.

/// What stands in for a removed password.
const MASK: &str = "***";

/// `url` with its password replaced by `***`: the one in the user-info part
/// (`postgres://user:secret@host/db`) and a `password=` query parameter alike. Anything that
/// does not look like a URL is returned with only its `password=` parameters masked.
pub(crate) fn redact_url(url: &str) -> String {
    let (head, query) = match url.split_once('?') {
        Some((head, query)) => (head, Some(query)),
        None => (url, None),
    };
    let mut out = String::with_capacity(url.len());
    match head.split_once("://") {
        Some((scheme, rest)) => {
            out.push_str(scheme);
            out.push_str("://");
            let authority_end = rest.find(['/', '#']).unwrap_or(rest.len());
            let (authority, path) = rest.split_at(authority_end);
            match authority.rsplit_once('@') {
                Some((userinfo, host)) => {
                    match userinfo.split_once(':') {
                        Some((user, _password)) => {
                            out.push_str(user);
                            out.push(':');
                            out.push_str(MASK);
                        }
                        None => out.push_str(userinfo),
                    }
                    out.push('@');
                    out.push_str(host);
                }
                None => out.push_str(authority),
            }
            out.push_str(path);
        }
        None => out.push_str(head),
    }
    if let Some(query) = query {
        out.push('?');
        let params: Vec<String> = query
            .split('&')
            .map(|param| match param.split_once('=') {
                Some((key, _)) if key.eq_ignore_ascii_case("password") => format!("{key}={MASK}"),
                _ => param.to_owned(),
            })
            .collect();
        out.push_str(&params.join("&"));
    }
    out
}

/// `message` with every password of `url` in it masked, in case a driver message quotes the
/// URL.
pub(crate) fn scrub(message: &str, url: &str) -> String {
    let mut out = message.to_owned();
    for password in passwords(url) {
        if !password.is_empty() {
            out = out.replace(password, MASK);
        }
    }
    out
}

/// The password parts of `url`, as written in it.
fn passwords(url: &str) -> Vec<&str> {
    let mut found = Vec::new();
    let (head, query) = url.split_once('?').unwrap_or((url, ""));
    if let Some((_, rest)) = head.split_once("://") {
        let authority = &rest[..rest.find(['/', '#']).unwrap_or(rest.len())];
        if let Some((userinfo, _)) = authority.rsplit_once('@')
            && let Some((_, password)) = userinfo.split_once(':')
        {
            found.push(password);
        }
    }
    for param in query.split('&') {
        if let Some((key, value)) = param.split_once('=')
            && key.eq_ignore_ascii_case("password")
        {
            found.push(value);
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_passwords_only() {
        let cases = [
            ("postgres://u:secret@db:5432/app", "postgres://u:***@db:5432/app"),
            (
                "postgres://u:p%40ss@db/app?sslmode=require",
                "postgres://u:***@db/app?sslmode=require",
            ),
            ("postgres://u:a:b@c@db/app", "postgres://u:***@db/app"),
            ("postgres://u@db/app", "postgres://u@db/app"),
            ("postgres://db/app", "postgres://db/app"),
            ("postgresql://db", "postgresql://db"),
            (
                "postgres://u@db/app?user=x&password=hunter2&options=-c%20a%3Db",
                "postgres://u@db/app?user=x&password=***&options=-c%20a%3Db",
            ),
            ("not a url password=x", "not a url password=x"),
            ("", ""),
        ];
        for (url, expected) in cases {
            assert_eq!(redact_url(url), expected, "{url}");
        }
    }

    #[test]
    fn scrubs_passwords_from_messages() {
        let url = "postgres://u:s3cret@db/app?password=other";
        let message = "cannot reach postgres://u:s3cret@db/app (password other)";
        assert_eq!(scrub(message, url), "cannot reach postgres://u:***@db/app (password ***)");
        assert_eq!(scrub("fine", "postgres://u:@db"), "fine");
    }
}
