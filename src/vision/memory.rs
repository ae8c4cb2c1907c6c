//! The allocator's two phases, for a binary that opts in with [`for_loading`].
//!
//! **Loading** a model allocates weights, optimizes them into packed copies and frees the
//! originals. With glibc's default, adaptive thresholds the heap keeps what was freed: 200 MB
//! more at the peak for a ViT-B/32, on a board that may have 2 GB. So while models load,
//! buffers of a megabyte and more are mapped and unmapped on their own.
//!
//! **Running** a graph allocates the same large activations every frame. Mapped on their own,
//! each one is fresh pages the kernel zeroes again on every frame: the pose stage took 1.5×
//! as long (`clipsight bench --person-model`). So the first inference ([`for_frames`]) returns
//! what loading left to the system once and raises both thresholds: from then on the
//! activations are reused from the heap. A model loaded after that loads with the heap.
//!
//! Nothing changes in a process that did not call [`for_loading`] (the tests, a library user),
//! or off glibc.

use std::sync::atomic::{AtomicU8, Ordering};

const DEFAULT: u8 = 0;
const LOADING: u8 = 1;
const FRAMES: u8 = 2;

static PHASE: AtomicU8 = AtomicU8::new(DEFAULT);

/// Maps buffers of 1 MiB and more on their own while models load. Call it first thing in
/// `main`, before any thread starts.
pub fn for_loading() {
    set_thresholds(1 << 20, 1 << 20);
    PHASE.store(LOADING, Ordering::SeqCst);
}

/// Called before every inference: the first one after [`for_loading`] trims the heap and
/// raises the thresholds (mapped: 32 MiB, glibc's maximum; trim: 64 MiB). Afterwards, and in a
/// process that never called [`for_loading`], it is one atomic load.
pub fn for_frames() {
    if first_frame(&PHASE) {
        set_thresholds(32 << 20, 64 << 20);
        trim();
    }
}

/// Whether this call moves `phase` from loading to frames (true once, for one caller).
fn first_frame(phase: &AtomicU8) -> bool {
    phase.load(Ordering::Relaxed) == LOADING
        && phase
            .compare_exchange(LOADING, FRAMES, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn set_thresholds(mmap: libc::c_int, trim: libc::c_int) {
    // SAFETY: mallopt only sets allocator parameters.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, mmap);
        libc::mallopt(libc::M_TRIM_THRESHOLD, trim);
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn trim() {
    // SAFETY: malloc_trim only returns free heap memory to the system.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn set_thresholds(_mmap: i32, _trim: i32) {}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim() {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_switch_once_and_only_after_loading() {
        let phase = AtomicU8::new(DEFAULT);
        assert!(!first_frame(&phase), "without for_loading nothing happens");
        assert_eq!(phase.load(Ordering::SeqCst), DEFAULT);
        phase.store(LOADING, Ordering::SeqCst);
        assert!(first_frame(&phase));
        assert_eq!(phase.load(Ordering::SeqCst), FRAMES);
        assert!(!first_frame(&phase), "only the first frame switches");
    }
}
