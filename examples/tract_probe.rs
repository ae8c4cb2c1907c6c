//! Exploration tool: how tract optimizes an image encoder, and where its time goes.
//!
//! `cargo run --release --example tract_probe -- FILE.onnx [threads] [iters] [input] [size]`
//! prints the optimized graph's op histogram, the matmul kernels picked, the run time, and a
//! per-op-type profile (wall time summed over nodes).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use tract_onnx::prelude::*;
use tract_onnx::tract_core::tract_linalg::multithread::Executor;

fn main() -> TractResult<()> {
    let args: Vec<String> = std::env::args().collect();
    let path = &args[1];
    let threads: usize = args.get(2).map(|s| s.parse().unwrap()).unwrap_or(1);
    let iters: usize = args.get(3).map(|s| s.parse().unwrap()).unwrap_or(5);
    let input = args
        .get(4)
        .cloned()
        .unwrap_or_else(|| "pixel_values".into());
    let size: usize = args.get(5).map(|s| s.parse().unwrap()).unwrap_or(224);
    let t0 = Instant::now();
    let mut model = tract_onnx::onnx().model_for_path(path)?;
    model.set_input_names([input.as_str()])?;
    model.set_input_fact(0, f32::fact([1, 3, size, size]).into())?;
    let typed = model.into_typed()?;
    let model = typed.into_optimized()?;
    eprintln!("load+optimize {:?}", t0.elapsed());
    let mut hist: BTreeMap<String, usize> = BTreeMap::new();
    let mut kernels: BTreeMap<String, usize> = BTreeMap::new();
    for n in &model.nodes {
        *hist.entry(n.op.name().to_string()).or_default() += 1;
        if n.op.name().contains("MatMul") || n.op.name().contains("EinSum") {
            let info = n.op.info().unwrap_or_default().join(" | ");
            let short: String = info
                .chars()
                .take(
                    std::env::var("PROBE_W")
                        .ok()
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(160),
                )
                .collect();
            *kernels
                .entry(format!("{}: {short}", n.op.name()))
                .or_default() += 1;
        }
    }
    println!("ops: {hist:?}");
    for (k, c) in &kernels {
        println!("{c:4} x {k}");
    }
    let opts = RunOptions {
        executor: (threads > 1).then(|| Executor::multithread(threads)),
        ..Default::default()
    };
    let plan = model.into_runnable_with_options(&opts)?;
    let mut state = plan.spawn()?;
    let x = Tensor::zero::<f32>(&[1, 3, size, size])?;
    let _ = state.run(tvec!(x.clone().into_tvalue()))?;
    let mut times = vec![];
    for _ in 0..iters {
        let t = Instant::now();
        let _ = state.run(tvec!(x.clone().into_tvalue()))?;
        times.push(t.elapsed());
    }
    times.sort();
    println!("run median {:?} min {:?}", times[times.len() / 2], times[0]);
    // profile
    let mut prof: BTreeMap<String, (Duration, usize)> = BTreeMap::new();
    let total = Instant::now();
    let _ =
        state.run_plan_with_eval(tvec!(x.into_tvalue()), |session, op_state, node, inputs| {
            let t = Instant::now();
            let r = tract_onnx::tract_core::plan::eval(session, op_state, node, inputs);
            let e = prof.entry(node.op.name().to_string()).or_default();
            e.0 += t.elapsed();
            e.1 += 1;
            r
        })?;
    let total = total.elapsed();
    let mut v: Vec<_> = prof.into_iter().collect();
    v.sort_by_key(|(_, (d, _))| std::cmp::Reverse(*d));
    println!("profiled run {total:?}");
    for (name, (d, c)) in v.iter().take(15) {
        println!(
            "{:>10.2?} {:5.1}% {c:4} x {name}",
            d,
            100.0 * d.as_secs_f64() / total.as_secs_f64()
        );
    }
    Ok(())
}
