//! Which kernel tract picks for each matrix product of an image encoder on this CPU (or on the
//! CPU that qemu presents), and whether a product runs slower than the CPU allows.
//!
//! tract chooses its matrix-product kernels while it optimizes a graph, from the instruction
//! set it probes at run time. `clipsight bench --kernels` prints the choice for every product;
//! `deploy/kernel-audit.sh` runs it under qemu as the ARM cores of the boards. A product is a
//! problem when it runs on tract's portable (non-SIMD) kernel, on a matrix-vector kernel while
//! its shape is a real matrix product, or, for int8, without the dot-product instructions
//! (ARM `sdot`, x86 VNNI or AMX) the CPU has. A matrix product tract did not lower to a kernel
//! at all is a problem too.

use serde::Serialize;
use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::DimLike;
use tract_onnx::tract_core::ops::matmul::optimized::OptMatMul;
use tract_onnx::tract_core::tract_linalg::isa::{self, Isa, IsaSet};

use crate::vision::encoder::{EncodeError, ImageGraph};
use crate::vision::tract::optimized_model;

/// The instructions that make an int8 product several times faster than multiply-accumulate.
const DOT_PRODUCT: [Isa; 4] = [
    Isa::Aarch64DotProd,
    Isa::X86_64Avx512Vnni,
    Isa::X86_64AvxVnni,
    Isa::X86_64AmxInt8,
];

/// One matrix product of the optimized graph and the kernel tract picked for it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KernelUse {
    /// The node's name in the optimized graph.
    pub node: String,
    /// The accumulator type: `f32`, or `i32` for an int8 product.
    pub accumulator: String,
    /// Rows, depth and columns of the product (`?` where tract cannot tell).
    pub m: String,
    /// Depth of the product.
    pub k: String,
    /// Columns of the product (1: a matrix-vector product).
    pub n: String,
    /// The kernel (several, `/`-separated, when tract keeps one per shape mode).
    pub kernel: String,
    /// The instructions the kernel needs (`any`: plain SIMD of the architecture).
    pub needs: String,
    /// Why this product runs slower than the CPU allows, if it does.
    pub problem: Option<String>,
}

/// Every matrix product of an image encoder with its kernel, on this CPU.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KernelReport {
    /// The instruction set tract found (after `TRACT_CPU_ISA` and the other knobs).
    pub cpu: String,
    /// The products tract lowered to a kernel.
    pub products: Vec<KernelUse>,
    /// Matrix products left as a reference op (`node: op`): tract's slow generic path.
    pub unlowered: Vec<String>,
}

impl KernelReport {
    /// Every problem, one line each; empty when the encoder runs on the CPU's best kernels.
    pub fn problems(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .products
            .iter()
            .filter_map(|p| p.problem.as_ref().map(|why| format!("{}: {why}", p.node)))
            .collect();
        out.extend(
            self.unlowered
                .iter()
                .map(|u| format!("{u}: not lowered to a matrix-product kernel")),
        );
        out
    }

    /// The table as text: a count per (accumulator, kernel, shape) and the problems.
    pub fn to_text(&self) -> String {
        let mut groups: Vec<(String, usize)> = Vec::new();
        for p in &self.products {
            let key = format!(
                "{} m={} k={} n={}  {}  (needs {})",
                p.accumulator, p.m, p.k, p.n, p.kernel, p.needs
            );
            match groups.iter_mut().find(|(k, _)| *k == key) {
                Some((_, c)) => *c += 1,
                None => groups.push((key, 1)),
            }
        }
        let mut s = format!(
            "cpu: {}\nmatrix products: {}\n",
            self.cpu,
            self.products.len()
        );
        for (key, count) in &groups {
            s += &format!("{count:4} × {key}\n");
        }
        let problems = self.problems();
        if problems.is_empty() {
            s += "problems: none\n";
        } else {
            s += &format!("problems: {}\n", problems.len());
            for p in &problems {
                s += &format!("  {p}\n");
            }
        }
        s
    }
}

/// Optimizes the encoder for this CPU and reports the kernel of each matrix product.
pub fn audit(graph: &ImageGraph) -> Result<KernelReport, EncodeError> {
    let size = graph.size;
    let fact = InferenceFact::dt_shape(f32::datum_type(), tvec!(1, 3, size, size));
    let model = optimized_model(&graph.path, &[(&graph.input, fact)], &graph.output)?;
    let cpu = isa::native();
    let mut products = Vec::new();
    let mut unlowered = Vec::new();
    for node in &model.nodes {
        if let Some(op) = node.op_as::<OptMatMul>() {
            products.push(describe(&node.name, op, cpu));
        } else if is_matrix_product(&node.op.name()) {
            unlowered.push(format!("{}: {}", node.name, node.op.name()));
        }
    }
    Ok(KernelReport {
        cpu: format!("{cpu:?}"),
        products,
        unlowered,
    })
}

/// Op names of matrix products tract runs without one of its kernels (its packing ops, which
/// feed a kernel, are not products).
fn is_matrix_product(op: &str) -> bool {
    !op.starts_with("OptMatMul") && (op.contains("MatMul") || op.contains("EinSum") || op == "Conv")
}

fn describe(node: &str, op: &OptMatMul, cpu: IsaSet) -> KernelUse {
    let dim = |d: Option<&TDim>| d.map_or("?".to_string(), |d| d.to_string());
    let n = op.n().to_usize().ok();
    let accumulator = op.mmm.first().map_or("?".to_string(), |k| {
        format!("{:?}", k.internal_type()).to_lowercase()
    });
    let problem = op.mmm.iter().find_map(|k| {
        let needs = k.isa().needs;
        judge(Kernel {
            int8: k.internal_type() == i32::datum_type(),
            portable: k.arch().is_none(),
            nr: k.nr(),
            has_dot: needs.iter().any(|i| DOT_PRODUCT.contains(i)),
            n,
            cpu_dot: DOT_PRODUCT
                .iter()
                .filter(|i| cpu.has(**i))
                .copied()
                .collect(),
        })
    });
    KernelUse {
        node: node.to_string(),
        accumulator,
        m: dim(Some(op.m())),
        k: dim(op.guess_k().as_ref()),
        n: dim(Some(op.n())),
        kernel: op
            .mmm
            .iter()
            .map(|k| k.name())
            .collect::<Vec<_>>()
            .join("/"),
        needs: op
            .mmm
            .iter()
            .map(|k| format!("{:?}", k.isa()))
            .collect::<Vec<_>>()
            .join("/"),
        problem,
    }
}

/// What [`judge`] needs to know of a product and its kernel.
struct Kernel {
    /// An int8 product (i32 accumulator).
    int8: bool,
    /// tract's portable Rust kernel, no SIMD.
    portable: bool,
    /// The kernel's column tile (1: a matrix-vector kernel).
    nr: usize,
    /// The kernel uses dot-product instructions.
    has_dot: bool,
    /// The product's column count, when known.
    n: Option<usize>,
    /// The dot-product instruction sets this CPU has.
    cpu_dot: Vec<Isa>,
}

/// Why this kernel is slower than the CPU allows for its product, or `None`.
fn judge(k: Kernel) -> Option<String> {
    if k.portable {
        return Some("tract's portable (non-SIMD) kernel".into());
    }
    let matrix = k.n != Some(1);
    if matrix && k.nr == 1 {
        return Some(format!(
            "a matrix-vector kernel for a product with n = {}",
            k.n.map_or("?".into(), |n| n.to_string())
        ));
    }
    // A matrix-vector product (n = 1) has no dot-product kernel in tract: its int8 64×1
    // kernel is the right one.
    if k.int8 && matrix && !k.has_dot && !k.cpu_dot.is_empty() {
        let have: Vec<&str> = k.cpu_dot.iter().map(|i| i.name()).collect();
        return Some(format!(
            "an int8 product without the CPU's dot-product instructions ({})",
            have.join(", ")
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kernel() -> Kernel {
        Kernel {
            int8: true,
            portable: false,
            nr: 8,
            has_dot: true,
            n: Some(50),
            cpu_dot: vec![Isa::Aarch64DotProd],
        }
    }

    #[test]
    fn a_dot_product_kernel_on_a_dot_product_cpu_passes() {
        assert_eq!(judge(kernel()), None);
    }

    #[test]
    fn an_int8_product_without_sdot_on_a_cpu_with_it_is_a_problem() {
        let why = judge(Kernel {
            has_dot: false,
            ..kernel()
        })
        .unwrap();
        assert!(
            why.contains("dot-product") && why.contains("dotprod"),
            "{why}"
        );
        // …but on a CPU without dot products (Cortex-A72) the SMLAL kernel is the best there is.
        assert_eq!(
            judge(Kernel {
                has_dot: false,
                cpu_dot: vec![],
                ..kernel()
            }),
            None
        );
    }

    #[test]
    fn portable_and_matrix_vector_kernels_on_matrix_products_are_problems() {
        let portable = judge(Kernel {
            portable: true,
            ..kernel()
        });
        assert!(portable.unwrap().contains("portable"));
        let mv = judge(Kernel {
            nr: 1,
            has_dot: false,
            ..kernel()
        });
        assert!(mv.unwrap().contains("n = 50"));
        // A real matrix-vector product (the class token's projection) may use one.
        assert_eq!(
            judge(Kernel {
                nr: 1,
                has_dot: false,
                n: Some(1),
                ..kernel()
            }),
            None
        );
        // Shape unknown: treated as a matrix.
        assert!(judge(Kernel {
            nr: 1,
            n: None,
            ..kernel()
        })
        .is_some());
    }

    #[test]
    fn fp32_products_are_not_held_to_dot_products() {
        assert_eq!(
            judge(Kernel {
                int8: false,
                has_dot: false,
                ..kernel()
            }),
            None
        );
    }

    #[test]
    fn only_unlowered_products_count_as_reference_ops() {
        assert!(is_matrix_product("EinSum"));
        assert!(is_matrix_product("MatMulInteger"));
        assert!(!is_matrix_product("OptMatMul"));
        assert!(!is_matrix_product("OptMatMulPack"));
        assert!(!is_matrix_product("DepthWise"));
    }
}
