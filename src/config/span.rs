//! Finds where a key lives in the TOML text, so validation errors (found after serde has turned
//! the text into structs) can still name `file:line:col`.

use std::ops::Range;
use toml::de::{DeTable, DeValue};

/// One step of a key path: a table key or an array index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seg {
    /// A key in a table.
    Key(String),
    /// An element of an array (also of an array of tables, `[[mysql]]`).
    Index(usize),
}

/// A path from the document root to a value, e.g. `mysql[1].schedule`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyPath(pub Vec<Seg>);

impl KeyPath {
    /// The root.
    pub fn root() -> Self {
        KeyPath(Vec::new())
    }

    /// This path extended by a key.
    pub fn key(&self, k: &str) -> Self {
        let mut v = self.0.clone();
        v.push(Seg::Key(k.to_string()));
        KeyPath(v)
    }

    /// This path extended by an index.
    pub fn index(&self, i: usize) -> Self {
        let mut v = self.0.clone();
        v.push(Seg::Index(i));
        KeyPath(v)
    }
}

impl std::fmt::Display for KeyPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, seg) in self.0.iter().enumerate() {
            match seg {
                Seg::Key(k) if i == 0 => write!(f, "{k}")?,
                Seg::Key(k) => write!(f, ".{k}")?,
                Seg::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

/// The byte range of the value at `path` (or of the deepest part of the path that exists).
/// For a key that is missing, this is the span of the table that should have held it.
pub fn find(text: &str, path: &KeyPath) -> Option<Range<usize>> {
    let doc = DeTable::parse(text).ok()?;
    let mut span = doc.span();
    let mut table: &DeTable = doc.get_ref();
    let mut value: Option<&DeValue> = None;
    for seg in &path.0 {
        let next = match (seg, value) {
            (Seg::Key(k), None) => table.iter().find(|(key, _)| key.get_ref() == k),
            (Seg::Key(k), Some(DeValue::Table(t))) => t.iter().find(|(key, _)| key.get_ref() == k),
            (Seg::Index(i), Some(DeValue::Array(a))) => {
                let Some(item) = a.get(*i) else { break };
                span = item.span();
                value = Some(item.get_ref());
                continue;
            }
            _ => None,
        };
        let Some((key, val)) = next else { break };
        // Prefer the key's position: that is what an operator looks for ("line 12: scheduel =").
        span = if matches!(val.get_ref(), DeValue::Table(_) | DeValue::Array(_)) {
            key.span()
        } else {
            val.span()
        };
        value = Some(val.get_ref());
        if let DeValue::Table(t) = val.get_ref() {
            table = t;
        }
    }
    Some(span)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::diagnostic::line_col;

    const DOC: &str = "[agent]\nhostname = \"a\"\n\n[[mysql]]\nname = \"x\"\n\n[[mysql]]\nname = \"y\"\nkeep = { last = 3 }\n";

    fn at(path: KeyPath) -> (usize, usize) {
        line_col(DOC, find(DOC, &path).unwrap().start)
    }

    #[test]
    fn finds_nested_keys_and_array_tables() {
        let root = KeyPath::root();
        assert_eq!(at(root.key("agent").key("hostname")), (2, 12));
        assert_eq!(at(root.key("mysql").index(1).key("name")), (8, 8));
        assert_eq!(
            at(root.key("mysql").index(1).key("keep").key("last")),
            (9, 17)
        );
        assert_eq!(
            root.key("mysql").index(1).key("keep").to_string(),
            "mysql[1].keep"
        );
    }

    #[test]
    fn missing_key_falls_back_to_its_table() {
        let p = KeyPath::root().key("mysql").index(0).key("schedule");
        assert_eq!(at(p).0, 4);
    }
}
