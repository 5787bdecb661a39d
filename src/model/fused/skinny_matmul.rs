//! `x · Wᵀ` for the few rows of a decode step.
//!
//! A decode step multiplies a handful of rows (one per live sequence) by every weight matrix, so
//! its cost is reading the weights from memory. A general gemm first packs the weight operand
//! into panels, which reads it and writes it again before the microkernel reads it a third time
//! (the packing was 39% of a decode step's profile). This kernel reads each weight row once,
//! straight from its `[out, in]` layout, and dots it with every input row while it sits in L1.
//! The weights may be f32 or bf16 (half the bytes to read; widened to f32 as they are loaded,
//! so the products are those of f32 arithmetic on the bf16 values).

use candle_core::{DType, Tensor, WithDType};
use half::bf16;
use rayon::prelude::*;

use super::{applies_to, simd, with_slices};
use crate::Result;

/// Most input rows for which [`skinny_matmul`] applies: beyond it the weights are reused enough
/// that a packing gemm wins.
pub const MAX_SKINNY_ROWS: usize = 16;

/// Weight rows per parallel task: enough work to amortise a task, enough tasks to balance.
const TASK_ROWS: usize = 32;

/// How many weight rows ahead of the ones being multiplied the SIMD kernels prefetch. The
/// hardware prefetcher alone left a decode step's weight loads waiting on memory, not
/// overlapped with the arithmetic (BENCHMARKS.md, "Prefetched decode weights").
const PREFETCH_ROWS: usize = 8;

/// `x · weightᵀ` for `x` `[rows, in]` (f32) and `weight` `[out, in]` (f32 or bf16), both on the
/// CPU with no gradient tracked and `rows ≤ MAX_SKINNY_ROWS`; `None` when any of that does not
/// hold.
pub fn skinny_matmul(x: &Tensor, weight: &Tensor) -> Result<Option<Tensor>> {
    Ok(skinny_matmuls(x, [weight])?.map(|[y]| y))
}

/// `x · wᵀ` for each of several weights sharing `x` (Q, K and V; gate and up), as one parallel
/// pass over all their rows: one hand-off to the thread pool instead of one per weight, and
/// balanced across weights of different sizes (GQA's K and V have a few blocks each). `None`
/// under the conditions of [`skinny_matmul`], for any weight, and when the weights' dtypes
/// differ.
pub fn skinny_matmuls<const N: usize>(
    x: &Tensor,
    weights: [&Tensor; N],
) -> Result<Option<[Tensor; N]>> {
    let Ok((rows, k)) = x.dims2() else {
        return Ok(None);
    };
    if N == 0 || rows == 0 || rows > MAX_SKINNY_ROWS || !applies_to(x) || x.track_op() {
        return Ok(None);
    }
    let dtype = weights[0].dtype();
    if !matches!(dtype, DType::F32 | DType::BF16) {
        return Ok(None);
    }
    let mut outputs = Vec::with_capacity(N);
    for weight in weights {
        match weight.dims2() {
            Ok((n, wk))
                if wk == k
                    && weight.device().is_cpu()
                    && weight.dtype() == dtype
                    && !weight.track_op()
                    && weight.is_contiguous() =>
            {
                // Each task owns a contiguous block of a transposed output, [n, rows].
                outputs.push(vec![0f32; n * rows]);
            }
            _ => return Ok(None),
        }
    }
    let x = x.contiguous()?;
    match dtype {
        DType::BF16 => products::<bf16, N>(&x, weights, &mut outputs, rows, k)?,
        _ => products::<f32, N>(&x, weights, &mut outputs, rows, k)?,
    }
    let mut results = Vec::with_capacity(N);
    for out_t in outputs {
        let n = out_t.len() / rows;
        let mut out = vec![0f32; rows * n];
        for (j, column) in out_t.chunks_exact(rows).enumerate() {
            for (r, &v) in column.iter().enumerate() {
                out[r * n + j] = v;
            }
        }
        results.push(Tensor::from_vec(out, (rows, n), x.device())?);
    }
    Ok(Some(results.try_into().map_err(|_| {
        crate::Error::Input("skinny_matmuls: one output per weight".into())
    })?))
}

/// Fills each transposed output `[n, rows]` with `x · wᵀ`, tasks of `TASK_ROWS` weight rows in
/// parallel.
fn products<W: Weight, const N: usize>(
    x: &Tensor,
    weights: [&Tensor; N],
    outputs: &mut [Vec<f32>],
    rows: usize,
    k: usize,
) -> Result<()> {
    with_slices::<f32, 1, _>([x], |[x]| {
        let mut scratch = Vec::new();
        let x = aligned_copy(x, &mut scratch);
        with_slices::<W, N, _>(weights, |ws| {
            let tasks: Vec<(&mut [f32], &[W])> = outputs
                .iter_mut()
                .zip(ws)
                .flat_map(|(out, w)| {
                    out.chunks_mut(TASK_ROWS * rows)
                        .zip(w.chunks(TASK_ROWS * k))
                })
                .collect();
            tasks
                .into_par_iter()
                .for_each(|(out, w)| weight_block(x, w, out, rows, k));
        })
    })?
}

/// `x` copied to a cache-line-aligned start inside `scratch`: tensor storage is aligned to 16
/// bytes only, and an unaligned 64-byte load spans two cache lines. The inputs are loaded again
/// for every block of weight rows; the weights, loaded once a call, keep their split loads.
fn aligned_copy<'a>(x: &[f32], scratch: &'a mut Vec<f32>) -> &'a [f32] {
    const LANES: usize = 64 / std::mem::size_of::<f32>();
    scratch.resize(x.len() + LANES - 1, 0.0);
    let start = scratch.as_ptr().align_offset(64).min(LANES - 1);
    let aligned = &mut scratch[start..start + x.len()];
    aligned.copy_from_slice(x);
    aligned
}

/// An element type of the weights: f32, or bf16 widened to f32 as it is read.
pub(super) trait Weight: WithDType + Copy + Send + Sync {
    /// Whether the element is bf16 (the vector loads widen it).
    const BF16: bool;

    /// `x · w` of a row of inputs and a row of weights.
    fn dot(x: &[f32], w: &[Self]) -> f32;
}

impl Weight for f32 {
    const BF16: bool = false;

    fn dot(x: &[f32], w: &[f32]) -> f32 {
        simd::dot(x, w)
    }
}

impl Weight for bf16 {
    const BF16: bool = true;

    /// [`simd::dot`] on the widened weights, in the same order (so the same sums as f32
    /// weights holding the bf16 values).
    fn dot(x: &[f32], w: &[bf16]) -> f32 {
        let mut widened = [0f32; 8];
        let mut lanes = [0f32; 8];
        let (mut cx, mut cw) = (x.chunks_exact(8), w.chunks_exact(8));
        for (x8, w8) in (&mut cx).zip(&mut cw) {
            for l in 0..8 {
                widened[l] = w8[l].to_f32();
                lanes[l] += x8[l] * widened[l];
            }
        }
        let tail: f32 = cx
            .remainder()
            .iter()
            .zip(cw.remainder())
            .map(|(a, b)| a * b.to_f32())
            .sum();
        lanes.iter().sum::<f32>() + tail
    }
}

/// `out[j·rows + r] = x[r] · w[j]` for the weight rows `w` of one task.
fn weight_block<W: Weight>(x: &[f32], w: &[W], out: &mut [f32], rows: usize, k: usize) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        // SAFETY: the CPU has AVX-512F (checked above).
        unsafe { avx512::weight_block(x, w, out, rows, k) };
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU has AVX2 and FMA (checked above).
        unsafe { avx2::weight_block(x, w, out, rows, k) };
        return;
    }
    portable_block(x, w, out, rows, k);
}

/// [`weight_block`] without SIMD intrinsics: one dot product per weight row and input row.
fn portable_block<W: Weight>(x: &[f32], w: &[W], out: &mut [f32], rows: usize, k: usize) {
    for (wj, out_j) in w.chunks_exact(k).zip(out.chunks_exact_mut(rows)) {
        for (o, xr) in out_j.iter_mut().zip(x.chunks_exact(k)) {
            *o = W::dot(xr, wj);
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    use super::{Weight, PREFETCH_ROWS};

    /// Up to four input rows: passes of four weight rows, each input vector loaded serving four
    /// weight rows. More input rows: passes of two weight rows by up to eight input rows, each
    /// weight vector serving eight rows, so the weights a step streams from memory are read once.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn weight_block<W: Weight>(
        x: &[f32],
        w: &[W],
        out: &mut [f32],
        rows: usize,
        k: usize,
    ) {
        if rows <= 4 {
            blocks::<W, 4, 4>(x, w, out, rows, k);
        } else {
            blocks::<W, 2, 8>(x, w, out, rows, k);
        }
    }

    /// Blocks of `J` weight rows, each against the input rows in passes of up to `R`; the first
    /// pass over a block prefetches the weights `PREFETCH_ROWS` rows ahead, so that their loads
    /// from memory overlap this block's arithmetic.
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn blocks<W: Weight, const J: usize, const R: usize>(
        x: &[f32],
        w: &[W],
        out: &mut [f32],
        rows: usize,
        k: usize,
    ) {
        let mut wj = w.chunks_exact(J * k);
        let mut oj = out.chunks_exact_mut(J * rows);
        for (wb, ob) in (&mut wj).zip(&mut oj) {
            // Past the end of `w` this points into memory it does not own; prefetching it is
            // harmless (a prefetch never faults) and the pointer is never dereferenced.
            let ahead = wb.as_ptr().wrapping_add(PREFETCH_ROWS * k);
            let mut r = 0;
            while r < rows {
                let n = (rows - r).min(R);
                let prefetch = (r == 0).then_some(ahead);
                match n {
                    8 => pass::<W, J, 8>(x, wb, ob, rows, k, r, prefetch),
                    7 => pass::<W, J, 7>(x, wb, ob, rows, k, r, prefetch),
                    6 => pass::<W, J, 6>(x, wb, ob, rows, k, r, prefetch),
                    5 => pass::<W, J, 5>(x, wb, ob, rows, k, r, prefetch),
                    4 => pass::<W, J, 4>(x, wb, ob, rows, k, r, prefetch),
                    3 => pass::<W, J, 3>(x, wb, ob, rows, k, r, prefetch),
                    2 => pass::<W, J, 2>(x, wb, ob, rows, k, r, prefetch),
                    _ => pass::<W, J, 1>(x, wb, ob, rows, k, r, prefetch),
                }
                r += n;
            }
        }
        super::portable_block(x, wj.remainder(), oj.into_remainder(), rows, k);
    }

    /// Input rows `r .. r + P` against the `J` weight rows of `wb`, sixteen lanes at a time
    /// (`J · P` accumulators of AVX-512's 32 registers); prefetches the `J` rows at `prefetch`.
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn pass<W: Weight, const J: usize, const P: usize>(
        x: &[f32],
        wb: &[W],
        ob: &mut [f32],
        rows: usize,
        k: usize,
        r: usize,
        prefetch: Option<*const W>,
    ) {
        let body = k - k % 16;
        let wp: [*const W; J] = std::array::from_fn(|j| wb[j * k..].as_ptr());
        let xp: [*const f32; P] = std::array::from_fn(|p| x[(r + p) * k..].as_ptr());
        let mut acc = [[_mm512_setzero_ps(); P]; J];
        let mut i = 0;
        while i < body {
            // One prefetch per cache line: sixteen f32 weights fill one, sixteen bf16 half.
            if let Some(ahead) = prefetch.filter(|_| !W::BF16 || i % 32 == 0) {
                for j in 0..J {
                    _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(j * k + i).cast());
                }
            }
            let xs: [__m512; P] = std::array::from_fn(|p| _mm512_loadu_ps(xp[p].add(i)));
            for j in 0..J {
                let wv = load16(wp[j].add(i));
                for p in 0..P {
                    acc[j][p] = _mm512_fmadd_ps(xs[p], wv, acc[j][p]);
                }
            }
            i += 16;
        }
        for j in 0..J {
            let wj = &wb[j * k..(j + 1) * k];
            for p in 0..P {
                let xr = &x[(r + p) * k..(r + p + 1) * k];
                let tail = W::dot(&xr[body..], &wj[body..]);
                ob[j * rows + r + p] = _mm512_reduce_add_ps(acc[j][p]) + tail;
            }
        }
    }

    /// Sixteen weights from `p` as f32: a bf16 is the high half of the f32 with the same bits.
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn load16<W: Weight>(p: *const W) -> __m512 {
        if W::BF16 {
            let halves = _mm256_loadu_si256(p.cast());
            _mm512_castsi512_ps(_mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(halves)))
        } else {
            _mm512_loadu_ps(p.cast())
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use super::{Weight, PREFETCH_ROWS};

    /// Four weight rows times two input rows per pass over `k`: eight accumulators, six loads
    /// per eight FMAs, so the FMA units rather than the loads set the pace. The first pass over
    /// a block prefetches the weights `PREFETCH_ROWS` rows ahead (as the AVX-512 kernel does).
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn weight_block<W: Weight>(
        x: &[f32],
        w: &[W],
        out: &mut [f32],
        rows: usize,
        k: usize,
    ) {
        let body = k - k % 8;
        let mut w4 = w.chunks_exact(4 * k);
        let mut out4 = out.chunks_exact_mut(4 * rows);
        for (wb, ob) in (&mut w4).zip(&mut out4) {
            let wp = [0, 1, 2, 3].map(|j| wb[j * k..].as_ptr());
            // Never dereferenced; a prefetch past the end of `w` is harmless.
            let ahead = wb.as_ptr().wrapping_add(PREFETCH_ROWS * k);
            let mut r = 0;
            while r < rows {
                let pair = (rows - r).min(2);
                let x0 = x[r * k..].as_ptr();
                let x1 = x[(r + pair - 1) * k..].as_ptr();
                let mut acc = [_mm256_setzero_ps(); 8];
                let mut i = 0;
                while i < body {
                    // One prefetch per cache line: eight f32 weights fill half of one.
                    if r == 0 && i % if W::BF16 { 32 } else { 16 } == 0 {
                        for j in 0..4 {
                            _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(j * k + i).cast());
                        }
                    }
                    let a = _mm256_loadu_ps(x0.add(i));
                    let b = _mm256_loadu_ps(x1.add(i));
                    for j in 0..4 {
                        let wv = load8(wp[j].add(i));
                        acc[j] = _mm256_fmadd_ps(a, wv, acc[j]);
                        acc[4 + j] = _mm256_fmadd_ps(b, wv, acc[4 + j]);
                    }
                    i += 8;
                }
                for j in 0..4 {
                    let wj = &wb[j * k..(j + 1) * k];
                    for p in 0..pair {
                        let xr = &x[(r + p) * k..(r + p + 1) * k];
                        let tail = W::dot(&xr[body..], &wj[body..]);
                        ob[j * rows + r + p] = hsum(acc[4 * p + j]) + tail;
                    }
                }
                r += pair;
            }
        }
        super::portable_block(x, w4.remainder(), out4.into_remainder(), rows, k);
    }

    /// Eight weights from `p` as f32: a bf16 is the high half of the f32 with the same bits.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn load8<W: Weight>(p: *const W) -> __m256 {
        if W::BF16 {
            let halves = _mm_loadu_si128(p.cast());
            _mm256_castsi256_ps(_mm256_slli_epi32::<16>(_mm256_cvtepu16_epi32(halves)))
        } else {
            _mm256_loadu_ps(p.cast())
        }
    }

    /// The sum of the eight lanes.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn hsum(v: __m256) -> f32 {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
        _mm_cvtss_f32(s)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{max_abs_diff, seeded_randn};
    use super::*;

    #[test]
    fn matches_candle_matmul_for_every_remainder() {
        // Odd and even row counts, k with and without a tail of the 8 lanes, n with and without
        // a remainder of the 4-row blocks and of the tasks.
        for (rows, k, n) in [
            (1, 8, 4),
            (3, 13, 7),
            (2, 5, 1),
            (8, 512, 301),
            (16, 64, 4 * TASK_ROWS + 3),
            (MAX_SKINNY_ROWS, 1408, 66),
        ] {
            let x = seeded_randn(&[rows, k], 1);
            let w = seeded_randn(&[n, k], 2);
            let got = skinny_matmul(&x, &w).unwrap().expect("applies");
            let want = x.matmul(&w.t().unwrap()).unwrap();
            assert_eq!(got.dims(), &[rows, n]);
            // Sums of k products of O(1) terms in another order: rounding grows with k.
            let diff = max_abs_diff(&got, &want);
            assert!(diff < 1e-5 * k as f32, "{rows}x{k}x{n}: {diff}");
        }
    }

    #[test]
    fn bf16_weights_give_the_products_of_their_f32_values() {
        for (rows, k, n) in [
            (1, 8, 4),
            (3, 13, 7),
            (2, 5, 1),
            (8, 512, 301),
            (MAX_SKINNY_ROWS, 1408, 4 * TASK_ROWS + 3),
        ] {
            let x = seeded_randn(&[rows, k], 1);
            let w = seeded_randn(&[n, k], 2).to_dtype(DType::BF16).unwrap();
            let widened = w.to_dtype(DType::F32).unwrap();
            let got = skinny_matmul(&x, &w)
                .unwrap()
                .expect("applies to bf16 weights");
            // Widening is exact and the kernel's order of sums is the same: bit for bit.
            let f32_weights = skinny_matmul(&x, &widened).unwrap().unwrap();
            assert_eq!(max_abs_diff(&got, &f32_weights), 0.0, "{rows}x{k}x{n}");
            let want = x.matmul(&widened.t().unwrap()).unwrap();
            assert!(
                max_abs_diff(&got, &want) < 1e-5 * k as f32,
                "{rows}x{k}x{n}"
            );
        }
        // One pass takes weights of one dtype.
        let x = seeded_randn(&[2, 16], 1);
        let (a, b) = (seeded_randn(&[4, 16], 2), seeded_randn(&[4, 16], 3));
        let b = b.to_dtype(DType::BF16).unwrap();
        assert!(skinny_matmuls(&x, [&a, &b]).unwrap().is_none());
    }

    /// Each SIMD kernel this CPU can run (whichever `weight_block` picks, the others too)
    /// against the portable loop, for f32 and bf16 weights and every remainder.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn every_simd_kernel_the_cpu_runs_matches_the_portable_loop() {
        fn check<W: Weight>(x: &[f32], w: &[W], rows: usize, k: usize) {
            let n = w.len() / k;
            let mut portable = vec![0f32; n * rows];
            portable_block(x, w, &mut portable, rows, k);
            let close = |got: &[f32], kernel: &str| {
                for (a, b) in got.iter().zip(&portable) {
                    assert!((a - b).abs() < 1e-5 * k as f32, "{kernel} {rows}x{k}x{n}");
                }
            };
            if std::arch::is_x86_feature_detected!("avx512f") {
                let mut out = vec![0f32; n * rows];
                // SAFETY: the CPU has AVX-512F (checked above).
                unsafe { avx512::weight_block(x, w, &mut out, rows, k) };
                close(&out, "avx512");
            }
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                let mut out = vec![0f32; n * rows];
                // SAFETY: the CPU has AVX2 and FMA (checked above).
                unsafe { avx2::weight_block(x, w, &mut out, rows, k) };
                close(&out, "avx2");
            }
        }
        for (rows, k, n) in [
            (1, 8, 4),
            (3, 13, 7),
            (5, 37, 9),
            (7, 40, 6),
            (8, 512, 11),
            (12, 33, 5),
            (16, 64, 8),
        ] {
            let x: Vec<f32> = seeded_randn(&[rows, k], 1)
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap();
            let w = seeded_randn(&[n, k], 2).flatten_all().unwrap();
            check::<f32>(&x, &w.to_vec1::<f32>().unwrap(), rows, k);
            let w = w.to_dtype(DType::BF16).unwrap().to_vec1::<bf16>().unwrap();
            check::<bf16>(&x, &w, rows, k);
        }
    }

    #[test]
    fn several_weights_in_one_pass_give_each_product() {
        let x = seeded_randn(&[8, 96], 1);
        let (q, k, v) = (
            seeded_randn(&[4 * TASK_ROWS + 5, 96], 2),
            seeded_randn(&[32, 96], 3),
            seeded_randn(&[7, 96], 4),
        );
        let [yq, yk, yv] = skinny_matmuls(&x, [&q, &k, &v]).unwrap().expect("applies");
        for (y, w) in [(yq, &q), (yk, &k), (yv, &v)] {
            // The same kernel on the same rows: bit for bit what one weight alone gives.
            let alone = skinny_matmul(&x, w).unwrap().unwrap();
            assert_eq!(max_abs_diff(&y, &alone), 0.0);
        }
        let other_k = seeded_randn(&[4, 95], 5);
        assert!(skinny_matmuls(&x, [&q, &other_k]).unwrap().is_none());
    }

    #[test]
    fn declines_what_it_does_not_cover() {
        let w = seeded_randn(&[4, 8], 2);
        let many = seeded_randn(&[MAX_SKINNY_ROWS + 1, 8], 1);
        assert!(skinny_matmul(&many, &w).unwrap().is_none());
        let mismatched = seeded_randn(&[2, 7], 1);
        assert!(skinny_matmul(&mismatched, &w).unwrap().is_none());
        let tracked = candle_core::Var::from_tensor(&seeded_randn(&[2, 8], 1)).unwrap();
        assert!(skinny_matmul(tracked.as_tensor(), &w).unwrap().is_none());
    }
}
