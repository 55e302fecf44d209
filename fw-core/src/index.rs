//! The release index's format, written by `fw-sign index` and read by
//! `fw-update` (docs/update.md): one definition for both ends.
//!
//! `index.json` is plain JSON (pretty-printed by serde_json, so `jq`, a
//! browser or a CDN read it) with a detached signature; no canonical JSON is
//! needed because the signature covers the exact bytes.

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// The index format this fw writes and reads.
pub const FORMAT: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Index {
    pub format: u32,
    pub created: u64,
    pub expires: u64,
    pub entries: Vec<Entry>,
}

/// One package of the index, read from its file and signed manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub name: String,
    pub version: String,
    pub security_version: u64,
    #[serde(default)]
    pub created: u64,
    pub url: String,
    pub size: u64,
    pub blake3: String,
}

impl Index {
    /// The JSON that `fw-sign index` signs: stable field order, pretty.
    pub fn to_json(&self) -> Vec<u8> {
        let mut json = serde_json::to_vec_pretty(self).expect("an index always serializes");
        json.push(b'\n');
        json
    }

    /// Parses the index's JSON (after its signature verified).
    pub fn parse(json: &[u8]) -> Result<Index> {
        let index: Index = serde_json::from_slice(json).map_err(|e| {
            Error::invalid(format!(
                "the index is not a valid fw index ({e}): publish one made by fw-sign index"
            ))
        })?;
        if index.format != FORMAT {
            return Err(Error::invalid(format!(
                "the index has format {}, this fw-update reads format {FORMAT}: upgrade fw",
                index.format
            )));
        }
        for entry in &index.entries {
            crate::manifest::validate_name(&entry.name)?;
            let hex_ok =
                entry.blake3.len() == 64 && entry.blake3.bytes().all(|b| b.is_ascii_hexdigit());
            if !hex_ok || !(entry.url.starts_with("http://") || entry.url.starts_with("https://")) {
                return Err(Error::invalid(format!(
                    "the index's entry {} {} has a bad blake3 or URL",
                    entry.name, entry.version
                )));
            }
        }
        Ok(index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_is_escaped_and_parses_as_written() {
        let index = Index {
            format: FORMAT,
            created: 10,
            expires: 20,
            entries: vec![Entry {
                name: "fw".into(),
                version: "1 \"q\"\\".into(),
                security_version: 2,
                created: 3,
                url: "http://x/a%20b.fw".into(),
                size: 4,
                blake3: "ab".repeat(32),
            }],
        };
        let json = index.to_json();
        let text = String::from_utf8(json.clone()).unwrap();
        assert!(text.contains(r#""version": "1 \"q\"\\""#), "{text}");
        assert!(text.contains("\"expires\": 20"), "{text}");
        assert_eq!(Index::parse(&json).unwrap(), index);
    }

    #[test]
    fn malformed_index_is_invalid() {
        let err =
            Index::parse(b"{\"format\":2,\"created\":1,\"expires\":2,\"entries\":[]}").unwrap_err();
        assert_eq!(err.code, crate::Exit::Invalid);
        assert!(Index::parse(b"[]").is_err());
    }
}
