//! The broker's allocator: the system's, except that large blocks are
//! mapped without reserving swap (`MAP_NORESERVE`).
//!
//! kafka-protocol's decoders size each array with `Vec::with_capacity` of
//! the element count a request claims, before reading any element (its
//! upstream fix is not released: kafka-protocol-rs PRs 152, 161 and 200).
//! A 14-byte request claiming two billion elements then asks for 141 GB;
//! the system allocator refuses more than the machine has, and Rust aborts
//! the process on a refused allocation: one request would stop the broker.
//! Mapped this way the block costs address space only; the decoder fails at
//! the end of the request's bytes and the block is unmapped untouched.
//! Memory is still bounded by what is actually written: at most the
//! elements the request's bytes can hold.

use std::alloc::{GlobalAlloc, Layout, System};
use std::ffi::c_void;
use std::ptr::null_mut;

use rustix::mm::{MapFlags, MremapFlags, ProtFlags};

/// Blocks from this size on are mapped (glibc maps them too, from 128 KiB,
/// but reserving them against the machine's memory).
const MAPPED: usize = 64 << 20;
const PAGE: usize = 4096;

pub struct Allocator;

fn mapped(layout: &Layout) -> bool {
    layout.size() >= MAPPED && layout.align() <= PAGE
}

fn map(size: usize) -> *mut u8 {
    // SAFETY: a new private anonymous mapping, overlapping nothing.
    let p = unsafe {
        rustix::mm::mmap_anonymous(
            null_mut(),
            size,
            ProtFlags::READ | ProtFlags::WRITE,
            MapFlags::PRIVATE | MapFlags::NORESERVE,
        )
    };
    p.map_or(null_mut(), |p| p.cast())
}

// SAFETY: blocks are either the system allocator's or whole mappings of
// their layout's size; `mapped` tells which from the layout alone, which is
// the same at allocation and at release (GlobalAlloc's contract).
unsafe impl GlobalAlloc for Allocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if mapped(&layout) {
            map(layout.size())
        } else {
            // SAFETY: forwarded as received.
            unsafe { System.alloc(layout) }
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if mapped(&layout) {
            map(layout.size()) // anonymous mappings are zeroed
        } else {
            // SAFETY: forwarded as received.
            unsafe { System.alloc_zeroed(layout) }
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if mapped(&layout) {
            // SAFETY: `ptr` is a mapping of exactly this size (see `alloc`).
            let _ = unsafe { rustix::mm::munmap(ptr.cast::<c_void>(), layout.size()) };
        } else {
            // SAFETY: forwarded as received.
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY (all branches): `ptr` and `layout` come from this
        // allocator; the new layout is valid per GlobalAlloc's contract.
        let new = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        match (mapped(&layout), mapped(&new)) {
            (false, false) => unsafe { System.realloc(ptr, layout, new_size) },
            (true, true) => unsafe {
                rustix::mm::mremap(
                    ptr.cast::<c_void>(),
                    layout.size(),
                    new_size,
                    MremapFlags::MAYMOVE,
                )
                .map_or(null_mut(), |p| p.cast())
            },
            _ => unsafe {
                let to = self.alloc(new);
                if !to.is_null() {
                    std::ptr::copy_nonoverlapping(ptr, to, layout.size().min(new_size));
                    self.dealloc(ptr, layout);
                }
                to
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_block_larger_than_the_machine_is_mapped_and_given_back() {
        let a = Allocator;
        let huge = Layout::from_size_align(1 << 40, 8).unwrap(); // 1 TiB
        unsafe {
            let p = a.alloc(huge);
            assert!(!p.is_null(), "1 TiB of address space");
            // Touch the ends: pages come on demand.
            *p = 1;
            *p.add((1 << 40) - 1) = 2;
            let q = a.realloc(p, huge, 1 << 20); // mapped -> system
            assert_eq!(*q, 1);
            let small = Layout::from_size_align(1 << 20, 8).unwrap();
            let r = a.realloc(q, small, 128 << 20); // system -> mapped
            assert_eq!(*r, 1);
            let big = Layout::from_size_align(128 << 20, 8).unwrap();
            let s = a.realloc(r, big, 256 << 20); // mapped -> mapped
            assert_eq!(*s, 1);
            a.dealloc(s, Layout::from_size_align(256 << 20, 8).unwrap());
        }
    }
}
