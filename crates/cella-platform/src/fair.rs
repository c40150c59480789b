//! Fair sharing of the workers between task creators (`docs/scheduling.md`).
//!
//! A FIFO queue let one user's burst of long tasks hold every worker while another
//! user's trivial task waited behind it. Instead, a free worker takes, among the first
//! [`SCAN_WINDOW`] queued tasks, the task of the creator who
//!
//! 1. runs the fewest tasks now,
//! 2. then, among those, started a task least recently (never beats any time),
//! 3. then the oldest queued task of that creator,
//!
//! and never a task whose creator already runs the per-user cap. Creators thus take
//! turns, one task each, whatever the order and number of their submissions. The state
//! is in memory: after a restart every creator starts even.

use std::collections::HashMap;

use cella_types::UserName;

/// How many queued tasks, from the head, a dequeue considers: enough to find another
/// creator's task behind a long burst of one creator, bounded so that dequeuing from a
/// queue of ten thousand tasks stays cheap. Beyond the window, order is FIFO.
pub(crate) const SCAN_WINDOW: usize = 512;

/// Running tasks and the last start of each creator.
#[derive(Debug, Default)]
pub(crate) struct FairShare {
    running: HashMap<UserName, usize>,
    /// The start counter's value at each creator's latest start.
    last_start: HashMap<UserName, u64>,
    starts: u64,
}

impl FairShare {
    /// How many tasks `user` runs now.
    pub(crate) fn running(&self, user: &UserName) -> usize {
        self.running.get(user).copied().unwrap_or(0)
    }

    /// Whether `user` may start one more task under `cap`.
    pub(crate) fn may_start(&self, user: &UserName, cap: usize) -> bool {
        self.running(user) < cap
    }

    /// Counts a task of `user` as started.
    pub(crate) fn start(&mut self, user: &UserName) {
        self.starts += 1;
        *self.running.entry(user.clone()).or_default() += 1;
        self.last_start.insert(user.clone(), self.starts);
    }

    /// Counts a task of `user` as ended (or never started after all).
    pub(crate) fn end(&mut self, user: &UserName) {
        if let Some(n) = self.running.get_mut(user) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.running.remove(user);
            }
        }
    }

    /// The position, among queued tasks' creators in queue order, of the task to start
    /// next under `cap`; `None` when every creator in it is at the cap.
    pub(crate) fn pick<'a>(
        &self,
        creators: impl IntoIterator<Item = &'a UserName>,
        cap: usize,
    ) -> Option<usize> {
        creators
            .into_iter()
            .enumerate()
            .filter(|(_, c)| self.may_start(c, cap))
            .min_by_key(|(i, c)| {
                let last = self.last_start.get(*c).copied().unwrap_or(0);
                (self.running(c), last, *i)
            })
            .map(|(i, _)| i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u(s: &str) -> UserName {
        s.parse().unwrap()
    }

    /// Dequeues everything with `workers` slots where each started task ends before the
    /// next start once all slots are busy: the order in which tasks start.
    fn drain(queue: &[&str], workers: usize, cap: usize) -> Vec<String> {
        let mut queue: Vec<UserName> = queue.iter().map(|c| u(c)).collect();
        let mut share = FairShare::default();
        let mut running: Vec<UserName> = Vec::new();
        let mut order = Vec::new();
        while !queue.is_empty() {
            if running.len() == workers || share.pick(&queue, cap).is_none() {
                // The oldest running task ends.
                let done = running.remove(0);
                share.end(&done);
                continue;
            }
            let i = share.pick(&queue, cap).unwrap();
            let c = queue.remove(i);
            share.start(&c);
            order.push(c.as_str().to_owned());
            running.push(c);
        }
        order
    }

    #[test]
    fn a_burst_of_one_creator_does_not_hold_back_another() {
        // Six tasks of alice, then one of bob, on two workers, no cap to speak of: bob's
        // task takes the second worker at once instead of starting last.
        let queue = ["alice", "alice", "alice", "alice", "alice", "alice", "bob"];
        let order = drain(&queue, 2, 8);
        assert_eq!(
            order,
            ["alice", "bob", "alice", "alice", "alice", "alice", "alice"]
        );
    }

    #[test]
    fn creators_take_turns_on_one_worker() {
        let order = drain(&["a", "a", "a", "b", "b", "c"], 1, 1);
        assert_eq!(order, ["a", "b", "c", "a", "b", "a"]);
    }

    #[test]
    fn the_cap_leaves_workers_for_others_and_is_released_at_the_end() {
        let mut share = FairShare::default();
        let (a, b) = (u("a"), u("b"));
        let queue = [a.clone(), a.clone(), b.clone()];
        share.start(&a);
        // a is at the cap of 1: b's task is taken although it is last in the queue.
        assert_eq!(share.pick(&queue, 1), Some(2));
        share.start(&b);
        assert_eq!(share.pick(&queue[..2], 1), None);
        share.end(&a);
        assert_eq!(share.pick(&queue[..2], 1), Some(0));
        assert_eq!(share.running(&a), 0);
        // Ending more than started never underflows.
        share.end(&a);
        assert_eq!(share.running(&a), 0);
        assert_eq!(share.running(&b), 1);
    }
}
