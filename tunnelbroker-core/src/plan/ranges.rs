//! A set of `u64` kept as disjoint, non-adjacent inclusive ranges, so that
//! memory grows with the number of runs, not with the number of members.

use std::collections::BTreeMap;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct RangeSet {
    /// start -> end (inclusive); ranges are disjoint and never adjacent.
    runs: BTreeMap<u64, u64>,
    len: u64,
}

impl RangeSet {
    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    /// The run that holds `x`, if any.
    fn run_of(&self, x: u64) -> Option<(u64, u64)> {
        let (&s, &e) = self.runs.range(..=x).next_back()?;
        (x <= e).then_some((s, e))
    }

    pub(crate) fn contains(&self, x: u64) -> bool {
        self.run_of(x).is_some()
    }

    /// Adds `x`; false if it was there already.
    pub(crate) fn insert(&mut self, x: u64) -> bool {
        let before = self.runs.range(..=x).next_back().map(|(&s, &e)| (s, e));
        if let Some((_, e)) = before
            && x <= e
        {
            return false;
        }
        let joins_before = before.filter(|&(_, e)| e.checked_add(1) == Some(x));
        let after = x
            .checked_add(1)
            .and_then(|n| self.runs.get(&n).map(|&e| (n, e)));
        match (joins_before, after) {
            (Some((s, _)), Some((n, e2))) => {
                self.runs.remove(&n);
                self.runs.insert(s, e2);
            }
            (Some((s, _)), None) => {
                self.runs.insert(s, x);
            }
            (None, Some((n, e2))) => {
                self.runs.remove(&n);
                self.runs.insert(x, e2);
            }
            (None, None) => {
                self.runs.insert(x, x);
            }
        }
        self.len += 1;
        true
    }

    /// Adds the whole run `s..=e`, which must not overlap any member.
    pub(crate) fn insert_run(&mut self, s: u64, e: u64) {
        debug_assert!(s <= e);
        let mut start = s;
        let mut end = e;
        if let Some((&ps, &pe)) = self.runs.range(..s).next_back()
            && pe.checked_add(1) == Some(s)
        {
            self.runs.remove(&ps);
            start = ps;
        }
        if let Some(next) = e.checked_add(1)
            && let Some(ne) = self.runs.remove(&next)
        {
            end = ne;
        }
        self.runs.insert(start, end);
        self.len += e - s + 1;
    }

    /// Removes `x`; false if it was not there.
    pub(crate) fn remove(&mut self, x: u64) -> bool {
        let Some((s, e)) = self.run_of(x) else {
            return false;
        };
        self.runs.remove(&s);
        if s < x {
            self.runs.insert(s, x - 1);
        }
        if x < e {
            self.runs.insert(x + 1, e);
        }
        self.len -= 1;
        true
    }

    /// The lowest value in `lo..=hi` that is not in the set.
    pub(crate) fn first_free(&self, lo: u64, hi: u64) -> Option<u64> {
        if lo > hi {
            return None;
        }
        let candidate = match self.run_of(lo) {
            None => lo,
            Some((_, e)) => e.checked_add(1)?,
        };
        (candidate <= hi).then_some(candidate)
    }

    /// Whether no member lies in `s..=e`.
    pub(crate) fn is_free(&self, s: u64, e: u64) -> bool {
        !self.contains(s) && self.runs.range(s..=e).next().is_none()
    }

    /// The runs in ascending order.
    pub(crate) fn runs(&self) -> impl DoubleEndedIterator<Item = (u64, u64)> + '_ {
        self.runs.iter().map(|(&s, &e)| (s, e))
    }

    /// Every member in ascending order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = u64> + '_ {
        self.runs().flat_map(|(s, e)| s..=e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    #[test]
    fn merges_and_splits() {
        let mut r = RangeSet::default();
        for x in [1, 3, 2, 5] {
            assert!(r.insert(x));
        }
        assert!(!r.insert(2));
        assert_eq!(r.runs().collect::<Vec<_>>(), vec![(1, 3), (5, 5)]);
        assert_eq!(r.first_free(1, 10), Some(4));
        assert!(r.remove(2));
        assert_eq!(r.runs().collect::<Vec<_>>(), vec![(1, 1), (3, 3), (5, 5)]);
        assert_eq!(r.first_free(1, 10), Some(2));
        assert_eq!(r.first_free(5, 5), None);
        assert_eq!(r.len(), 3);
    }

    #[test]
    fn edges_of_u64() {
        let mut r = RangeSet::default();
        assert!(r.insert(u64::MAX));
        assert!(r.insert(u64::MAX - 1));
        assert!(r.insert(0));
        assert_eq!(r.first_free(u64::MAX - 1, u64::MAX), None);
        assert!(r.remove(u64::MAX));
        assert_eq!(r.first_free(u64::MAX - 1, u64::MAX), Some(u64::MAX));
    }

    proptest! {
        #[test]
        fn behaves_like_a_btreeset(ops in proptest::collection::vec((any::<bool>(), 0u64..40), 0..200)) {
            let mut r = RangeSet::default();
            let mut m = BTreeSet::new();
            for (ins, x) in ops {
                if ins { prop_assert_eq!(r.insert(x), m.insert(x)); }
                else { prop_assert_eq!(r.remove(x), m.remove(&x)); }
                prop_assert_eq!(r.len(), m.len() as u64);
                prop_assert_eq!(r.iter().collect::<Vec<_>>(), m.iter().copied().collect::<Vec<_>>());
                let ff = (0u64..=40).find(|v| !m.contains(v));
                prop_assert_eq!(r.is_free(x, x + 3), (x..=x + 3).all(|v| !m.contains(&v)));
                prop_assert_eq!(r.first_free(0, 40), ff);
                // runs are disjoint and never adjacent
                let runs: Vec<_> = r.runs().collect();
                for w in runs.windows(2) { prop_assert!(w[0].1 + 1 < w[1].0); }
            }
        }
    }
}
