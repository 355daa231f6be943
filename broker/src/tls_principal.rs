//! The principal of a client that showed a certificate (mutual TLS), as
//! Kafka builds it: the certificate's subject as an RFC 2253 name
//! (`CN=alice,OU=eng,O=Karnak,C=SE`), then Kafka's
//! `ssl.principal.mapping.rules` (`RULE:pattern/replacement/[LU]`, ...,
//! `DEFAULT`): the first rule whose pattern matches the whole name gives
//! the user; `User:` is put in front.

use anyhow::{Context, bail};
use regex::Regex;
use x509_parser::prelude::{FromDer, X509Certificate};

#[derive(Debug, Clone)]
enum Rule {
    /// The name as it is.
    Default,
    Replace {
        pattern: Regex,
        replacement: String,
        case: Case,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Case {
    Keep,
    Lower,
    Upper,
}

/// Parsed `--ssl-principal-mapping-rules`.
#[derive(Debug, Clone)]
pub struct PrincipalMapping {
    rules: Vec<Rule>,
}

impl Default for PrincipalMapping {
    fn default() -> Self {
        PrincipalMapping {
            rules: vec![Rule::Default],
        }
    }
}

/// Reads up to an unescaped `/`; returns the text (escapes kept, so a
/// pattern's `\/` stays a regex escape) and the rest after the `/`.
fn until_slash(s: &str) -> Option<(&str, &str)> {
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '/' => return Some((&s[..i], &s[i + 1..])),
            _ => {}
        }
    }
    None
}

impl PrincipalMapping {
    /// Kafka's syntax: rules separated by commas (a rule's pattern may hold
    /// commas too), each `DEFAULT` or `RULE:pattern/replacement/` with an
    /// optional `L` or `U` (lower or upper case the result).
    pub fn parse(spec: &str) -> anyhow::Result<Self> {
        let mut rules = Vec::new();
        let mut rest = spec.trim();
        while !rest.is_empty() {
            if let Some(after) = rest.strip_prefix("DEFAULT") {
                rules.push(Rule::Default);
                rest = after;
            } else if let Some(after) = rest.strip_prefix("RULE:") {
                let (pattern, after) = until_slash(after)
                    .with_context(|| format!("rule {rest:?}: no '/' after the pattern"))?;
                let (replacement, after) = until_slash(after)
                    .with_context(|| format!("rule {rest:?}: no '/' after the replacement"))?;
                let (case, after) = match after.chars().next() {
                    Some('L') => (Case::Lower, &after[1..]),
                    Some('U') => (Case::Upper, &after[1..]),
                    _ => (Case::Keep, after),
                };
                let pattern = Regex::new(&format!("^(?:{pattern})$"))
                    .with_context(|| format!("rule pattern {pattern:?}"))?;
                rules.push(Rule::Replace {
                    pattern,
                    replacement: replacement.replace("\\/", "/"),
                    case,
                });
                rest = after;
            } else {
                bail!("{rest:?}: expected DEFAULT or RULE:pattern/replacement/[LU]");
            }
            rest = rest.trim_start();
            match rest.strip_prefix(',') {
                Some(after) => rest = after.trim_start(),
                None if rest.is_empty() => {}
                None => bail!("{rest:?}: rules are separated by commas"),
            }
        }
        if rules.is_empty() {
            bail!("no rules");
        }
        Ok(PrincipalMapping { rules })
    }

    /// The user a distinguished name maps to; None when no rule matches
    /// (Kafka then refuses the connection).
    pub fn map(&self, dn: &str) -> Option<String> {
        for rule in &self.rules {
            match rule {
                Rule::Default => return Some(dn.to_string()),
                Rule::Replace {
                    pattern,
                    replacement,
                    case,
                } => {
                    if !pattern.is_match(dn) {
                        continue;
                    }
                    let out = pattern.replace(dn, replacement.as_str()).into_owned();
                    return Some(match case {
                        Case::Keep => out,
                        Case::Lower => out.to_lowercase(),
                        Case::Upper => out.to_uppercase(),
                    });
                }
            }
        }
        None
    }
}

/// A certificate's subject as RFC 2253 writes it (what Java's
/// `X500Principal.getName()` gives Kafka): the last RDN first.
pub fn subject_dn(cert_der: &[u8]) -> Option<String> {
    let (_, cert) = X509Certificate::from_der(cert_der).ok()?;
    let mut rdns = Vec::new();
    for rdn in cert.subject().iter() {
        let mut parts = Vec::new();
        for atv in rdn.iter() {
            let oid = atv.attr_type().to_id_string();
            let name = match oid.as_str() {
                "2.5.4.3" => "CN",
                "2.5.4.6" => "C",
                "2.5.4.7" => "L",
                "2.5.4.8" => "ST",
                "2.5.4.9" => "STREET",
                "2.5.4.10" => "O",
                "2.5.4.11" => "OU",
                "0.9.2342.19200300.100.1.25" => "DC",
                "0.9.2342.19200300.100.1.1" => "UID",
                _ => "",
            };
            let value = atv.as_str().ok();
            parts.push(match (name, value) {
                ("", _) | (_, None) => {
                    // Other attributes: dotted OID and the value's bytes.
                    let hex: String = atv
                        .attr_value()
                        .data
                        .iter()
                        .map(|b| format!("{b:02x}"))
                        .collect();
                    format!("{oid}=#{hex}")
                }
                (name, Some(v)) => format!("{name}={}", escape(v)),
            });
        }
        rdns.push(parts.join("+"));
    }
    rdns.reverse();
    Some(rdns.join(","))
}

/// RFC 2253 section 2.4 escaping.
fn escape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    let last = v.chars().count().saturating_sub(1);
    for (i, c) in v.chars().enumerate() {
        let special = matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';')
            || (i == 0 && (c == '#' || c == ' '))
            || (i == last && c == ' ');
        if special {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kafka_rules() {
        let m = PrincipalMapping::parse(
            r"RULE:^CN=(.*?),OU=ServiceUsers.*$/$1/,RULE:^CN=(.*?),OU=(.*?),O=.*$/$1@$2/L, DEFAULT",
        )
        .unwrap();
        assert_eq!(
            m.map("CN=kafka-1,OU=ServiceUsers,O=Org").as_deref(),
            Some("kafka-1")
        );
        assert_eq!(
            m.map("CN=Alice,OU=Eng,O=Org,C=SE").as_deref(),
            Some("alice@eng")
        );
        assert_eq!(m.map("CN=bob").as_deref(), Some("CN=bob"));
        let strict = PrincipalMapping::parse("RULE:^CN=([a-z]+)$/$1/U").unwrap();
        assert_eq!(strict.map("CN=carol").as_deref(), Some("CAROL"));
        assert_eq!(strict.map("CN=carol,O=x"), None);
        assert_eq!(
            PrincipalMapping::default().map("CN=a,O=b").as_deref(),
            Some("CN=a,O=b")
        );
        let slash = PrincipalMapping::parse(r"RULE:^CN=(.*)\/x$/$1\/y/").unwrap();
        assert_eq!(slash.map("CN=a/x").as_deref(), Some("a/y"));
        for bad in [
            "",
            "RULE:abc",
            "RULE:a/b",
            "NOPE",
            "DEFAULT DEFAULT",
            "RULE:(/x/",
        ] {
            assert!(PrincipalMapping::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn escapes() {
        assert_eq!(escape("a,b"), "a\\,b");
        assert_eq!(escape("#x "), "\\#x\\ ");
        assert_eq!(escape("plain"), "plain");
    }
}
