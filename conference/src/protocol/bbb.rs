//! BigBlueButton API requests.
//!
//! Every call carries `checksum = hex(H(callName + queryString + secret))`,
//! where `queryString` is the query exactly as sent, without the checksum
//! parameter, and `H` is SHA-1 or SHA-256 (also SHA-384/512 on BBB ≥ 2.6;
//! the server tells the algorithm by the checksum's length and accepts only
//! those listed in its `supportedChecksumAlgorithms`).
//! See the "API security model" section of BigBlueButton's API reference.

use sha1::Sha1;
use sha2::{Digest, Sha256, Sha384, Sha512};

use super::hex;

/// The hash of a checksum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Checksum {
    Sha1,
    Sha256,
    Sha384,
    Sha512,
}

impl Checksum {
    pub fn as_str(self) -> &'static str {
        match self {
            Checksum::Sha1 => "sha1",
            Checksum::Sha256 => "sha256",
            Checksum::Sha384 => "sha384",
            Checksum::Sha512 => "sha512",
        }
    }

    /// The algorithm BigBlueButton infers from a checksum's length in hex digits.
    pub fn from_hex_len(len: usize) -> Option<Checksum> {
        match len {
            40 => Some(Checksum::Sha1),
            64 => Some(Checksum::Sha256),
            96 => Some(Checksum::Sha384),
            128 => Some(Checksum::Sha512),
            _ => None,
        }
    }

    fn digest(self, data: &[u8]) -> Vec<u8> {
        match self {
            Checksum::Sha1 => Sha1::digest(data).to_vec(),
            Checksum::Sha256 => Sha256::digest(data).to_vec(),
            Checksum::Sha384 => Sha384::digest(data).to_vec(),
            Checksum::Sha512 => Sha512::digest(data).to_vec(),
        }
    }
}

impl std::str::FromStr for Checksum {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "sha1" => Ok(Checksum::Sha1),
            "sha256" => Ok(Checksum::Sha256),
            "sha384" => Ok(Checksum::Sha384),
            "sha512" => Ok(Checksum::Sha512),
            _ => Err(format!(
                "unknown checksum algorithm `{s}` (sha1, sha256, sha384 or sha512)"
            )),
        }
    }
}

impl std::fmt::Display for Checksum {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Percent-encodes a query component: everything but `A-Z a-z 0-9 - _ . ~`.
pub fn encode_component(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push('%');
            out.push_str(&hex(&[b]).to_ascii_uppercase());
        }
    }
    out
}

/// Decodes `%XX` and `+` (as a space) in a query component.
pub fn decode_component(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let digit = |b: u8| (b as char).to_digit(16);
                match (digit(bytes[i + 1]), digit(bytes[i + 2])) {
                    (Some(h), Some(l)) => {
                        out.push((h * 16 + l) as u8);
                        i += 2;
                    }
                    _ => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `name=value&name=value`, percent-encoded, in the given order.
pub fn encode_query(params: &[(&str, &str)]) -> String {
    params
        .iter()
        .map(|(k, v)| format!("{}={}", encode_component(k), encode_component(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// Parses a query string into decoded pairs, in order.
pub fn parse_query(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (decode_component(k), decode_component(v)),
            None => (decode_component(p), String::new()),
        })
        .collect()
}

/// `hex(H(call + query + secret))`.
pub fn checksum(call: &str, query: &str, secret: &str, algorithm: Checksum) -> String {
    let mut data = String::with_capacity(call.len() + query.len() + secret.len());
    data.push_str(call);
    data.push_str(query);
    data.push_str(secret);
    hex(&algorithm.digest(data.as_bytes()))
}

/// The query of a call with its checksum appended.
pub fn signed_query(
    call: &str,
    params: &[(&str, &str)],
    secret: &str,
    algorithm: Checksum,
) -> String {
    let query = encode_query(params);
    let sum = checksum(call, &query, secret, algorithm);
    if query.is_empty() {
        format!("checksum={sum}")
    } else {
        format!("{query}&checksum={sum}")
    }
}

/// The full URL of a call: `base` is the API endpoint, like
/// `https://bbb.example.org/bigbluebutton/api`.
pub fn url(
    base: &str,
    call: &str,
    params: &[(&str, &str)],
    secret: &str,
    algorithm: Checksum,
) -> String {
    format!(
        "{}/{call}?{}",
        base.trim_end_matches('/'),
        signed_query(call, params, secret, algorithm)
    )
}

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChecksumError {
    #[error("the request has no checksum")]
    Missing,
    #[error("a checksum of {0} hex digits matches no algorithm")]
    UnknownLength(usize),
    #[error("checksum algorithm {0} is not enabled on this server")]
    NotSupported(Checksum),
    #[error("checksums do not match")]
    Mismatch,
}

/// Checks a request's raw query string as BigBlueButton does: take the
/// `checksum` parameter out of the query as received (no re-encoding),
/// choose the algorithm by the checksum's length, recompute and compare.
pub fn verify(
    call: &str,
    raw_query: &str,
    secret: &str,
    supported: &[Checksum],
) -> Result<Checksum, ChecksumError> {
    let given = raw_query
        .split('&')
        .find_map(|p| p.strip_prefix("checksum="))
        .ok_or(ChecksumError::Missing)?;
    let algorithm =
        Checksum::from_hex_len(given.len()).ok_or(ChecksumError::UnknownLength(given.len()))?;
    if !supported.contains(&algorithm) {
        return Err(ChecksumError::NotSupported(algorithm));
    }
    let rest = raw_query
        .replacen(&format!("&checksum={given}"), "", 1)
        .replacen(&format!("checksum={given}&"), "", 1)
        .replacen(&format!("checksum={given}"), "", 1);
    let expected = checksum(call, &rest, secret, algorithm);
    if super::constant_time_eq(expected.as_bytes(), given.to_ascii_lowercase().as_bytes()) {
        Ok(algorithm)
    } else {
        Err(ChecksumError::Mismatch)
    }
}

/// A URL fit for a log line: the checksum's value is replaced by `…`.
pub fn redact(url: &str) -> String {
    match url.find("checksum=") {
        Some(i) => {
            let end = url[i..].find('&').map_or(url.len(), |j| i + j);
            format!("{}checksum=…{}", &url[..i], &url[end..])
        }
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_of_the_api_documentation_example() {
        // BigBlueButton's API reference: call `create`, query
        // `name=Test+Meeting&meetingID=abc123&attendeePW=111222&moderatorPW=333444`,
        // secret `639259d4-9dd8-4b25-bf01-95f9567eaf4b` → this SHA-1.
        let q = "name=Test+Meeting&meetingID=abc123&attendeePW=111222&moderatorPW=333444";
        assert_eq!(
            checksum(
                "create",
                q,
                "639259d4-9dd8-4b25-bf01-95f9567eaf4b",
                Checksum::Sha1
            ),
            "1fcbb0c4fc1f039f73aa6d697d2db9ba7f803f17"
        );
    }

    #[test]
    fn signed_urls_verify_and_tampering_fails() {
        for alg in [Checksum::Sha1, Checksum::Sha256] {
            let u = url(
                "https://b.example/bigbluebutton/api/",
                "join",
                &[("fullName", "Ada L. <ada>"), ("meetingID", "lpc-2020-bofs")],
                "s3cret",
                alg,
            );
            assert!(u.starts_with(
                "https://b.example/bigbluebutton/api/join?fullName=Ada%20L.%20%3Cada%3E&"
            ));
            let q = u.split_once('?').unwrap().1;
            assert_eq!(verify("join", q, "s3cret", &[alg]), Ok(alg));
            assert_eq!(
                verify("join", q, "other", &[alg]),
                Err(ChecksumError::Mismatch)
            );
            assert_eq!(
                verify("create", q, "s3cret", &[alg]),
                Err(ChecksumError::Mismatch)
            );
            let tampered = q.replace("lpc-2020-bofs", "lpc-2020-staff");
            assert_eq!(
                verify("join", &tampered, "s3cret", &[alg]),
                Err(ChecksumError::Mismatch)
            );
        }
        let q = signed_query("getMeetings", &[], "x", Checksum::Sha256);
        assert_eq!(
            verify("getMeetings", &q, "x", &[Checksum::Sha1]),
            Err(ChecksumError::NotSupported(Checksum::Sha256))
        );
        assert_eq!(
            verify("getMeetings", "", "x", &[Checksum::Sha1]),
            Err(ChecksumError::Missing)
        );
    }

    #[test]
    fn query_round_trip_and_redaction() {
        let q = encode_query(&[("a b", "ü&=+"), ("c", "")]);
        assert_eq!(q, "a%20b=%C3%BC%26%3D%2B&c=");
        assert_eq!(
            parse_query(&q),
            vec![("a b".into(), "ü&=+".into()), ("c".into(), String::new())]
        );
        assert_eq!(
            redact("https://x/api/join?a=1&checksum=abcdef&b=2"),
            "https://x/api/join?a=1&checksum=…&b=2"
        );
        assert_eq!(
            redact("https://x/api/getMeetings?checksum=abc"),
            "https://x/api/getMeetings?checksum=…"
        );
    }
}
