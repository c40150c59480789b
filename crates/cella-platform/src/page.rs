//! Pagination of the list calls: a caller asks for at most `limit` items after an opaque
//! page token, and gets the next page token while more remain (docs/api.md, § Lists).
//!
//! Every list is ordered by (creation time, id), oldest first unless the caller asks for
//! newest first. A token is the position of the last item of a page, not an offset, so
//! pages neither repeat nor skip items when others are added or deleted in between.

use crate::{PlatformError, Result};
use base64::Engine;

/// Items per page when the caller does not say: small enough that a page of tasks with
/// full results stays far under the 4 MiB message limit of gRPC clients.
pub const DEFAULT_PAGE_SIZE: usize = 100;
/// Largest page: a caller asking for more gets this many (and a next page token).
pub const MAX_PAGE_SIZE: usize = 1000;
/// Longest page token accepted: a position is a time and an id of at most ~100 bytes.
const MAX_TOKEN_LEN: usize = 512;
/// Versions the token's encoding, so that a later change refuses old tokens clearly.
const TOKEN_PREFIX: &str = "p1:";

/// Where an item sits in its list's order.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Position {
    /// Creation time, milliseconds since the Unix epoch.
    pub created_ms: u64,
    /// The item's id (or name), which breaks ties.
    pub id: String,
}

impl Position {
    /// The opaque page token that continues a list after this item.
    pub fn token(&self) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(format!("{TOKEN_PREFIX}{}:{}", self.created_ms, self.id))
    }

    /// The position a page token names.
    ///
    /// # Errors
    ///
    /// [`PlatformError::BadValue`] when the token was not made by
    /// [`Position::token`].
    pub fn from_token(token: &str) -> Result<Self> {
        let invalid = || {
            PlatformError::BadValue(
                "invalid page_token: pass the next_page_token of the previous page unchanged"
                    .into(),
            )
        };
        if token.len() > MAX_TOKEN_LEN {
            return Err(invalid());
        }
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(token)
            .map_err(|_| invalid())?;
        let text = String::from_utf8(raw).map_err(|_| invalid())?;
        let (ms, id) = text
            .strip_prefix(TOKEN_PREFIX)
            .and_then(|rest| rest.split_once(':'))
            .ok_or_else(invalid)?;
        Ok(Self {
            created_ms: ms.parse().map_err(|_| invalid())?,
            id: id.to_owned(),
        })
    }
}

/// What a caller asked for: a page size and where to start.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PageRequest {
    /// Items in the page, at most [`MAX_PAGE_SIZE`].
    pub limit: usize,
    /// Start after this position; `None` for the first page.
    pub after: Option<Position>,
    /// Newest first instead of oldest first.
    pub newest_first: bool,
}

impl PageRequest {
    /// The request for `page_size` items (0: [`DEFAULT_PAGE_SIZE`]; above
    /// [`MAX_PAGE_SIZE`]: that) after `page_token` (empty: from the start).
    ///
    /// # Errors
    ///
    /// [`PlatformError::BadValue`] for a token not made by this node.
    pub fn new(page_size: u32, page_token: &str, newest_first: bool) -> Result<Self> {
        let limit = match usize::try_from(page_size) {
            Ok(0) => DEFAULT_PAGE_SIZE,
            Ok(n) => n.min(MAX_PAGE_SIZE),
            Err(_) => MAX_PAGE_SIZE,
        };
        let after = if page_token.is_empty() {
            None
        } else {
            Some(Position::from_token(page_token)?)
        };
        Ok(Self {
            limit,
            after,
            newest_first,
        })
    }

    /// The first page of [`DEFAULT_PAGE_SIZE`] items, oldest first.
    pub fn first() -> Self {
        Self {
            limit: DEFAULT_PAGE_SIZE,
            ..Self::default()
        }
    }

    /// The page of `items` (in any order) this request selects, in list order.
    pub fn select<T: Listed>(&self, mut items: Vec<T>) -> Page<T> {
        if self.newest_first {
            items.sort_by_key(|item| std::cmp::Reverse(item.position()));
        } else {
            items.sort_by_key(Listed::position);
        }
        let start = self.after.as_ref().map_or(0, |after| {
            items.partition_point(|item| {
                let p = item.position();
                if self.newest_first {
                    p >= *after
                } else {
                    p <= *after
                }
            })
        });
        let mut items = items.split_off(start);
        let more = items.len() > self.limit;
        items.truncate(self.limit);
        Page { items, more }
    }
}

/// An item of a list call.
pub trait Listed {
    /// Its place in the list's order.
    fn position(&self) -> Position;
}

/// One page of a list.
#[derive(Debug, Clone)]
pub struct Page<T> {
    /// The items, in list order.
    pub items: Vec<T>,
    /// Whether items follow the last one.
    pub more: bool,
}

impl<T: Listed> Page<T> {
    /// The token of the next page: the position of the last item, if more follow.
    pub fn next_token(&self) -> Option<String> {
        self.items
            .last()
            .filter(|_| self.more)
            .map(|last| last.position().token())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, PartialEq)]
    struct Item(u64, &'static str);

    impl Listed for Item {
        fn position(&self) -> Position {
            Position {
                created_ms: self.0,
                id: self.1.into(),
            }
        }
    }

    fn items() -> Vec<Item> {
        vec![
            Item(3, "c"),
            Item(1, "b"),
            Item(2, "a"),
            Item(1, "a"),
            Item(5, "e"),
        ]
    }

    fn walk(size: u32, newest_first: bool) -> Vec<Vec<Item>> {
        let mut pages = Vec::new();
        let mut token = String::new();
        loop {
            let page = PageRequest::new(size, &token, newest_first)
                .unwrap()
                .select(items());
            let next = page.next_token();
            pages.push(page.items);
            match next {
                Some(t) => token = t,
                None => return pages,
            }
        }
    }

    #[test]
    fn pages_cover_every_item_once_in_order() {
        let pages = walk(2, false);
        assert_eq!(pages.len(), 3);
        let flat: Vec<_> = pages.concat();
        assert_eq!(
            flat,
            [
                Item(1, "a"),
                Item(1, "b"),
                Item(2, "a"),
                Item(3, "c"),
                Item(5, "e")
            ]
        );
        let newest: Vec<_> = walk(2, true).concat();
        assert_eq!(newest, flat.iter().rev().cloned().collect::<Vec<_>>());
        // An exact multiple ends without an empty page.
        assert_eq!(walk(5, false).len(), 1);
        assert_eq!(walk(1, false).len(), 5);
    }

    #[test]
    fn a_token_is_a_position_not_an_offset() {
        let first = PageRequest::new(2, "", false).unwrap().select(items());
        let token = first.next_token().unwrap();
        // An item older than the position is added, one on the first page deleted: the
        // next page starts right after the last item seen.
        let mut changed = items();
        changed.retain(|i| *i != Item(1, "a"));
        changed.push(Item(0, "z"));
        let second = PageRequest::new(2, &token, false).unwrap().select(changed);
        assert_eq!(second.items, [Item(2, "a"), Item(3, "c")]);
    }

    #[test]
    fn sizes_default_and_clamp_and_bad_tokens_are_refused() {
        assert_eq!(
            PageRequest::new(0, "", false).unwrap().limit,
            DEFAULT_PAGE_SIZE
        );
        assert_eq!(PageRequest::new(7, "", false).unwrap().limit, 7);
        assert_eq!(
            PageRequest::new(u32::MAX, "", false).unwrap().limit,
            MAX_PAGE_SIZE
        );
        let long = "A".repeat(MAX_TOKEN_LEN + 1);
        for bad in ["!!", "cDE6eA", "bm90IGEgdG9rZW4", long.as_str()] {
            let e = PageRequest::new(0, bad, false).unwrap_err();
            assert!(
                matches!(&e, PlatformError::BadValue(m) if m.contains("page_token")),
                "{bad}: {e}"
            );
        }
        let p = Position {
            created_ms: 42,
            id: "task-x:y".into(),
        };
        assert_eq!(Position::from_token(&p.token()).unwrap(), p);
    }
}
