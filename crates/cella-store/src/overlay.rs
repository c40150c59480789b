//! The pending writes of one `MetaStore::write` closure, kept apart from the shared redb
//! transaction until the closure returns `Ok`.
//!
//! Several closures share one redb transaction under group commit; a closure that fails
//! must leave no trace in it. Buffering each closure's writes here and applying them only
//! on success gives that, without redb savepoints (which cannot be taken in a transaction
//! that already holds writes).

use std::collections::BTreeMap;

/// Sealed values written (`Some`) or deleted (`None`) by one closure, by table and key.
#[derive(Default)]
pub(crate) struct Overlay {
    tables: BTreeMap<&'static str, BTreeMap<String, Option<Vec<u8>>>>,
}

impl Overlay {
    /// Records a write of `sealed` under `table`/`key`.
    pub(crate) fn put(&mut self, table: &'static str, key: String, sealed: Vec<u8>) {
        self.tables
            .entry(table)
            .or_default()
            .insert(key, Some(sealed));
    }

    /// Records a deletion of `table`/`key`.
    pub(crate) fn delete(&mut self, table: &'static str, key: String) {
        self.tables.entry(table).or_default().insert(key, None);
    }

    /// `Some(Some(v))` written, `Some(None)` deleted, `None` untouched here.
    pub(crate) fn get(&self, table: &str, key: &str) -> Option<Option<&[u8]>> {
        self.tables
            .get(table)
            .and_then(|t| t.get(key))
            .map(|v| v.as_deref())
    }

    /// The changes to one table, in key order.
    pub(crate) fn table(&self, table: &str) -> Option<&BTreeMap<String, Option<Vec<u8>>>> {
        self.tables.get(table).filter(|t| !t.is_empty())
    }

    /// Whether the closure wrote nothing.
    pub(crate) fn is_empty(&self) -> bool {
        self.tables.values().all(BTreeMap::is_empty)
    }

    /// Every change, table by table.
    pub(crate) fn into_changes(
        self,
    ) -> impl Iterator<Item = (&'static str, BTreeMap<String, Option<Vec<u8>>>)> {
        self.tables.into_iter()
    }
}

/// Merges a table's stored entries (in key order) with an overlay's changes, and returns
/// the first `limit` entries of the result.
pub(crate) fn merge(
    stored: Vec<(String, Vec<u8>)>,
    changes: &BTreeMap<String, Option<Vec<u8>>>,
    limit: usize,
) -> Vec<(String, Vec<u8>)> {
    let mut merged: BTreeMap<String, Vec<u8>> = stored.into_iter().collect();
    for (k, v) in changes {
        match v {
            Some(v) => merged.insert(k.clone(), v.clone()),
            None => merged.remove(k),
        };
    }
    merged.into_iter().take(limit).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_applies_puts_and_deletes_in_order() {
        let stored = vec![
            ("a".into(), vec![1]),
            ("b".into(), vec![2]),
            ("c".into(), vec![3]),
        ];
        let mut o = Overlay::default();
        o.delete("t", "a".into());
        o.put("t", "b".into(), vec![20]);
        o.put("t", "d".into(), vec![4]);
        let changes = o.table("t").unwrap();
        let all = merge(stored.clone(), changes, usize::MAX);
        assert_eq!(
            all,
            vec![
                ("b".into(), vec![20]),
                ("c".into(), vec![3]),
                ("d".into(), vec![4])
            ]
        );
        assert_eq!(merge(stored, changes, 1), vec![("b".into(), vec![20])]);
        assert_eq!(o.get("t", "a"), Some(None));
        assert_eq!(o.get("t", "d"), Some(Some(&[4u8][..])));
        assert_eq!(o.get("t", "zz"), None);
        assert!(o.table("other").is_none());
        assert!(!o.is_empty());
        assert!(Overlay::default().is_empty());
    }
}
