//! Prefetch window arithmetic for sequential reads, kept free of I/O so it can be tested
//! alone. A stream starts with one small request (about the kernel's readahead, so tools
//! that read the head of many files do not pull whole objects); while reads stay
//! sequential the request size doubles up to the part size and the window of data kept
//! in flight ahead of the reader doubles up to its maximum.

use std::ops::Range;

/// Tunables of the read path.
#[derive(Debug, Clone, Copy)]
pub struct PrefetchConfig {
    /// Size of the first request of a sequential stream.
    pub first_request: u64,
    /// Largest single ranged GET.
    pub part_size: u64,
    /// Most bytes one stream keeps in flight ahead of its reader.
    pub max_window: u64,
    /// Block size of random reads (aligned ranged GETs).
    pub block_size: u64,
    /// Global budget for prefetched data across all open files.
    pub memory_budget: u64,
    /// Bytes of random-read blocks kept in the LRU block cache.
    pub block_cache: u64,
}

impl Default for PrefetchConfig {
    fn default() -> Self {
        PrefetchConfig {
            first_request: 256 * 1024,
            part_size: 8 * 1024 * 1024,
            max_window: 64 * 1024 * 1024,
            block_size: 64 * 1024,
            memory_budget: 160 * 1024 * 1024,
            block_cache: 32 * 1024 * 1024,
        }
    }
}

/// The request plan of one sequential stream.
#[derive(Debug, Clone)]
pub struct Window {
    cfg: PrefetchConfig,
    object_size: u64,
    /// Where the next request starts.
    pub next_start: u64,
    /// Size of the next request.
    pub request_size: u64,
    /// How far ahead of the reader requests are kept in flight.
    pub window: u64,
}

impl Window {
    pub fn new(start: u64, object_size: u64, cfg: PrefetchConfig) -> Self {
        Window {
            cfg,
            object_size,
            next_start: start,
            request_size: cfg.first_request.min(cfg.part_size),
            window: cfg.first_request,
        }
    }

    /// The reader moved on to data past its first request: look further ahead.
    pub fn grow(&mut self) {
        self.window = (self.window * 2).min(self.cfg.max_window.max(self.cfg.first_request));
    }

    /// Requests to issue now so that `[.., demand_end)` is requested and data up to
    /// `demand_end + window` is in flight. Each call returns ranges in order; request
    /// sizes double up to the part size.
    pub fn plan(&mut self, demand_end: u64) -> Vec<Range<u64>> {
        let target = demand_end
            .saturating_add(self.window.saturating_sub(self.cfg.first_request))
            .max(demand_end)
            .min(self.object_size);
        let mut out = Vec::new();
        while self.next_start < target || (self.next_start < demand_end.min(self.object_size)) {
            let end = (self.next_start + self.request_size).min(self.object_size);
            out.push(self.next_start..end);
            self.next_start = end;
            self.request_size = (self.request_size * 2).min(self.cfg.part_size);
        }
        out
    }

    /// Whether `offset` is where this stream expects reads: from `from` (its oldest
    /// data still held) to the end of what is in flight plus the window.
    pub fn covers(&self, from: u64, offset: u64) -> bool {
        offset >= from && offset <= self.next_start.saturating_add(self.window)
    }
}

/// The aligned blocks a random read of `[offset, offset+len)` needs.
pub fn blocks_for(offset: u64, len: u64, block_size: u64, object_size: u64) -> Vec<Range<u64>> {
    if len == 0 || offset >= object_size {
        return Vec::new();
    }
    let end = (offset + len).min(object_size);
    let first = offset / block_size;
    let last = (end - 1) / block_size;
    (first..=last)
        .map(|b| b * block_size..((b + 1) * block_size).min(object_size))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1024 * 1024;

    fn cfg() -> PrefetchConfig {
        PrefetchConfig::default()
    }

    #[test]
    fn first_request_is_small() {
        let mut w = Window::new(0, 1024 * MIB, cfg());
        let p = w.plan(4096);
        assert_eq!(p, vec![0..256 * 1024]);
        // A second small read inside the first request issues nothing new.
        assert!(w.plan(8192).is_empty());
    }

    #[test]
    fn window_and_requests_grow_to_their_limits() {
        let c = cfg();
        let mut w = Window::new(0, 10 * 1024 * MIB, c);
        let mut read_to = 0;
        let mut sizes = Vec::new();
        for _ in 0..2000 {
            read_to += 128 * 1024;
            for r in w.plan(read_to) {
                sizes.push(r.end - r.start);
            }
            w.grow();
        }
        assert_eq!(sizes[0], 256 * 1024);
        assert_eq!(sizes[1], 512 * 1024);
        assert_eq!(*sizes.iter().max().unwrap(), c.part_size);
        assert_eq!(w.window, c.max_window);
        // In flight ahead of the reader never exceeds the window plus one part.
        assert!(w.next_start - read_to <= c.max_window + c.part_size);
    }

    #[test]
    fn plan_stops_at_object_end() {
        let mut w = Window::new(0, 300 * 1024, cfg());
        for _ in 0..5 {
            w.grow();
        }
        let p = w.plan(100);
        assert_eq!(p.last().unwrap().end, 300 * 1024);
        assert!(w.plan(300 * 1024).is_empty());
    }

    #[test]
    fn demand_beyond_the_window_is_always_planned() {
        let mut w = Window::new(0, 100 * MIB, cfg());
        let p = w.plan(3 * MIB);
        assert!(p.last().unwrap().end >= 3 * MIB);
        // Contiguous, no gaps or overlaps.
        for pair in p.windows(2) {
            assert_eq!(pair[0].end, pair[1].start);
        }
    }

    #[test]
    fn random_blocks_are_aligned_and_clipped() {
        let bs = 64 * 1024;
        assert_eq!(blocks_for(10, 4096, bs, 1 << 30), vec![0..bs]);
        assert_eq!(
            blocks_for(bs - 10, 20, bs, 1 << 30),
            vec![0..bs, bs..2 * bs]
        );
        assert_eq!(blocks_for(100, 50, bs, 120), vec![0..120]);
        assert!(blocks_for(500, 10, bs, 120).is_empty());
    }
}
