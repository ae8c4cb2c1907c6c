//! Issue 6: the per-frame hot path of our own code (preprocess, the embedder's buffers, the
//! match against a bank) allocates nothing once warm. A counting global allocator counts the
//! allocations of the calling thread only, so tests running beside it do not interfere.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use clipsight::model::{Interpolation, ModelIdentity, ResizeMode};
use clipsight::prompts::bank::{Bank, BankEntry, Evidence};
use clipsight::types::Category;
use clipsight::types::RgbView;
use clipsight::vision::encoder::{EncodeError, ImageEncoder};
use clipsight::vision::preprocess::PreprocessSpec;
use clipsight::vision::ImageEmbedder;

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: forwards to the system allocator; the counter is a thread-local Cell with a
// const initializer, which never allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations() -> u64 {
    ALLOCATIONS.with(|c| c.get())
}

/// An encoder that does arithmetic but no allocation: isolates our code from the runtime's.
struct SumEncoder {
    len: usize,
    dim: usize,
}

impl ImageEncoder for SumEncoder {
    fn input_len(&self) -> usize {
        self.len
    }
    fn dim(&self) -> usize {
        self.dim
    }
    fn encode(&mut self, pixels: &[f32], out: &mut [f32]) -> Result<(), EncodeError> {
        for (i, o) in out.iter_mut().enumerate() {
            *o = pixels.iter().skip(i).step_by(self.dim).sum::<f32>() + 1.0;
        }
        let n = out.iter().map(|v| v * v).sum::<f32>().sqrt();
        out.iter_mut().for_each(|v| *v /= n);
        Ok(())
    }
}

fn bank(dim: usize, labels: usize) -> Bank {
    let entries = (0..labels)
        .map(|i| BankEntry {
            label: format!("l{i}"),
            category: Category::Object,
            priority: 1,
            say: format!("l{i}"),
            threshold: 0.5,
            neg_mean: 0.0,
            neg_std: 0.1,
            aliases: Vec::new(),
            calibration: Evidence::UNKNOWN,
            source: Default::default(),
            gate: Vec::new(),
        })
        .collect();
    let embeddings = (0..labels * dim)
        .map(|i| ((i % 7) as f32 - 3.0) / 10.0)
        .collect();
    Bank::new(
        "t".into(),
        ModelIdentity {
            id: "t".into(),
            fingerprint: "t".into(),
        },
        "t".into(),
        entries,
        dim,
        embeddings,
    )
    .unwrap()
}

#[test]
fn issue_6_a_warm_frame_allocates_nothing_in_our_code() {
    let spec = PreprocessSpec {
        size: 224,
        resize: ResizeMode::Shortest,
        interpolation: Interpolation::Bicubic,
        mean: [0.5; 3],
        std: [0.25; 3],
    };
    let dim = 64;
    let encoder = SumEncoder {
        len: 3 * 224 * 224,
        dim,
    };
    let mut embedder = ImageEmbedder::new(spec, Box::new(encoder)).unwrap();
    let bank = bank(dim, 80);
    let mut cos = vec![0f32; bank.len()];
    let (w, h) = (640u32, 480u32);
    let frames: Vec<Vec<u8>> = (0..3u8)
        .map(|k| {
            (0..w * h * 3)
                .map(|i| (i as u8).wrapping_mul(31).wrapping_add(k))
                .collect()
        })
        .collect();
    let mut frame = |px: &[u8]| {
        let e = embedder.embed(RgbView::new(w, h, px).unwrap()).unwrap();
        bank.cosines(e, &mut cos);
    };
    // The first frame of a size plans the resize (allocates); later frames must not.
    frame(&frames[0]);
    let before = allocations();
    for px in frames.iter().cycle().take(9) {
        frame(px);
    }
    assert_eq!(allocations() - before, 0, "allocations on warm frames");
}
