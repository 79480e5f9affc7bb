//! `MAPIAllocateBuffer`, `MAPIAllocateMore`, `MAPIFreeBuffer`: MAPI's chained allocations.
//!
//! Every block starts with a [`Header`] just before the pointer the caller sees. A root block
//! (from `MAPIAllocateBuffer`) heads a list of the blocks `MAPIAllocateMore` linked to it;
//! `MAPIFreeBuffer` on the root frees the whole list. Hand-written because this is MAPI's own
//! contract (one free for a tree of allocations), which no allocator crate offers.

use std::ffi::c_void;
use std::ptr;
use std::sync::atomic::{AtomicPtr, AtomicU64, Ordering};

/// In front of every block; 16 bytes, so what follows is aligned for any MAPI type.
#[repr(C, align(16))]
struct Header {
    magic: AtomicU64,
    /// On a root: the first linked block. On a linked block: the next one.
    next: AtomicPtr<Header>,
}

const ROOT: u64 = 0x4d41_5049_524f_4f54; // "MAPIROOT"
const MORE: u64 = 0x4d41_5049_4d4f_5245; // "MAPIMORE"
const FREED: u64 = 0x4d41_5049_4652_4545; // "MAPIFREE"

fn raw_alloc(size: u32, magic: u64) -> *mut Header {
    let Some(total) = std::mem::size_of::<Header>().checked_add(size as usize) else {
        return ptr::null_mut();
    };
    // SAFETY: malloc with a non-zero size; malloc's alignment (16 on LP64 glibc) suits Header.
    let block = unsafe { libc::malloc(total) }.cast::<Header>();
    if !block.is_null() {
        // SAFETY: the block is fresh and large enough for a Header.
        unsafe {
            block.write(Header {
                magic: AtomicU64::new(magic),
                next: AtomicPtr::new(ptr::null_mut()),
            });
        }
    }
    block
}

fn data(header: *mut Header) -> *mut c_void {
    // SAFETY: the data follows the header inside the same block.
    unsafe { header.add(1).cast() }
}

/// The header of a pointer that claims to come from `MAPIAllocateBuffer`.
///
/// # Safety
/// `buffer` must be non-null and point just past readable memory of a Header's size.
unsafe fn header_of(buffer: *mut c_void) -> *mut Header {
    // SAFETY: per the contract.
    unsafe { buffer.cast::<Header>().sub(1) }
}

/// A root block of `size` bytes; null when out of memory.
pub fn allocate(size: u32) -> *mut c_void {
    let h = raw_alloc(size, ROOT);
    if h.is_null() {
        ptr::null_mut()
    } else {
        data(h)
    }
}

/// A block freed with `root`; null when out of memory or when `root` is not a live root.
///
/// # Safety
/// `root` must come from [`allocate`] (or be a pointer whose 16 preceding bytes are readable).
pub unsafe fn allocate_more(size: u32, root: *mut c_void) -> *mut c_void {
    if root.is_null() {
        return ptr::null_mut();
    }
    // SAFETY: per the contract.
    let root = unsafe { &*header_of(root) };
    if root.magic.load(Ordering::Acquire) != ROOT {
        return ptr::null_mut();
    }
    let h = raw_alloc(size, MORE);
    if h.is_null() {
        return ptr::null_mut();
    }
    // Push onto the root's list; a CAS loop so that two threads adding to one root are safe.
    let mut head = root.next.load(Ordering::Acquire);
    loop {
        // SAFETY: h is ours until published.
        unsafe { (*h).next.store(head, Ordering::Relaxed) };
        match root
            .next
            .compare_exchange(head, h, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => break,
            Err(now) => head = now,
        }
    }
    data(h)
}

/// Frees a root block and every block linked to it. `false` when `buffer` is not a live root.
///
/// # Safety
/// `buffer` must come from [`allocate`] and not be used afterwards.
pub unsafe fn free(buffer: *mut c_void) -> bool {
    if buffer.is_null() {
        return true;
    }
    // SAFETY: per the contract.
    let root = unsafe { header_of(buffer) };
    // SAFETY: as above; swap so that a second free of the same root is refused, not repeated.
    if unsafe { &*root }
        .magic
        .compare_exchange(ROOT, FREED, Ordering::AcqRel, Ordering::Acquire)
        .is_err()
    {
        return false;
    }
    // SAFETY: the root is live (we just claimed it); linked blocks are only reachable from it.
    let mut next = unsafe { &*root }.next.load(Ordering::Acquire);
    while !next.is_null() {
        // SAFETY: every linked block is a live Header that only this list owns.
        let after = unsafe { &*next }.next.load(Ordering::Relaxed);
        // SAFETY: allocated by malloc in raw_alloc.
        unsafe { libc::free(next.cast()) };
        next = after;
    }
    // SAFETY: allocated by malloc in raw_alloc.
    unsafe { libc::free(root.cast()) };
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chain_is_freed_with_its_root_and_only_once() {
        let root = allocate(32);
        assert!(!root.is_null());
        assert_eq!(root as usize % 16, 0, "aligned for any MAPI type");
        // SAFETY: root is a live root; the blocks are written within their sizes.
        unsafe {
            for n in 0..5u8 {
                let p = allocate_more(64, root).cast::<u8>();
                assert!(!p.is_null());
                p.write_bytes(n, 64);
            }
            // A linked block is not a root: neither More on it nor freeing it is accepted.
            let more = allocate_more(8, root);
            assert!(allocate_more(8, more).is_null());
            assert!(!free(more));
            assert!(free(root));
            assert!(free(std::ptr::null_mut()));
        }
    }
}
