//! `x · Wᵀ` for inference on the CPU, against a weight stored in column panels.
//!
//! [`skinny_matmul`](super::skinny_matmul) reads a weight in its `[out, in]` layout: each output
//! is a dot product along `in`, summed across a vector's lanes at the end; with 8–16 input rows
//! it ran at about a third of the cores' FMA rate. The rollout engine's copy of the weights is
//! laid out for this kernel instead: panels of 32 output columns with each `in` step's 32
//! weights adjacent. A step of the kernel loads them (one or two vectors), broadcasts one input
//! element per row, and every lane accumulates a finished output: no reductions, each weight
//! loaded serves up to eight rows, and a panel is one sequential stream to prefetch. The weights
//! may be f32 or bf16 (half the bytes; widened to f32 as they are loaded). With more rows the
//! same kernel is a gemm whose weight operand was packed once, when the weights were published,
//! so prefill takes it too (BENCHMARKS.md, "Panel weights").

use candle_core::{DType, Tensor};
use half::bf16;
use rayon::prelude::*;

use super::skinny_matmul::Weight;
use super::{applies_to, with_slices};
use crate::{Error, Result};

/// Output columns per panel: two AVX-512 vectors of f32.
const PANEL: usize = 32;

/// Input rows per pass over a panel: 8 rows × 2 vectors of accumulators, plus the weights.
const ROW_GROUP: usize = 8;

/// How many steps (one per input element) ahead the first pass over a panel prefetches its
/// weights. Without it the loads waited on memory while the FMAs waited on the loads: a step's
/// time was the sum of the two rather than the larger.
const PREFETCH_STEPS: usize = 48;

/// A weight matrix `[out, in]` stored as column panels for [`panel_matmuls`] (inference only:
/// no gradient reaches it).
#[derive(Debug, Clone)]
pub struct PanelWeight {
    /// `[⌈out / 32⌉, in, 32]`, contiguous, the last panel padded with zero columns. f32: column
    /// `c` of a panel at position `c`. bf16: columns `c` and `16 + c` in the low and high halves
    /// of 32-bit lane `c`, so that a shift and a mask widen one 64-byte load into both halves.
    panels: Tensor,
    out_dim: usize,
    in_dim: usize,
}

impl PanelWeight {
    /// `weight` `[out, in]` (any float dtype, on the CPU) in panels of `dtype` (f32 or bf16).
    pub fn new(weight: &Tensor, dtype: DType) -> Result<Self> {
        let (out_dim, in_dim) = weight.dims2()?;
        if !weight.device().is_cpu() || !matches!(dtype, DType::F32 | DType::BF16) {
            return Err(Error::Input(format!(
                "panel weights are f32 or bf16 on the CPU, not {dtype:?} on {:?}",
                weight.device()
            )));
        }
        let dense = weight.to_dtype(dtype)?.contiguous()?;
        let count = out_dim.div_ceil(PANEL);
        let panels = match dtype {
            DType::BF16 => {
                let data = with_slices::<bf16, 1, _>([&dense], |[w]| pack_columns(w, in_dim))?;
                Tensor::from_vec(data, (count, in_dim, PANEL), weight.device())?
            }
            _ => {
                let data = with_slices::<f32, 1, _>([&dense], |[w]| pack_columns(w, in_dim))?;
                Tensor::from_vec(data, (count, in_dim, PANEL), weight.device())?
            }
        };
        Ok(Self {
            panels,
            out_dim,
            in_dim,
        })
    }

    /// `(out, in)`.
    pub fn dims(&self) -> (usize, usize) {
        (self.out_dim, self.in_dim)
    }

    /// The element type of the stored weights.
    pub fn dtype(&self) -> DType {
        self.panels.dtype()
    }

    /// The weight `[out, in]` in `dtype`, for the inputs [`panel_matmuls`] does not take.
    pub fn to_dense(&self, dtype: DType) -> Result<Tensor> {
        let count = self.panels.dim(0)?;
        let (half, n) = (PANEL / 2, self.in_dim);
        let dense = if self.dtype() == DType::BF16 {
            self.panels
                .reshape((count, n, half, 2))?
                .permute((0, 3, 2, 1))?
        } else {
            self.panels
                .reshape((count, n, 2, half))?
                .permute((0, 2, 3, 1))?
        };
        Ok(dense
            .to_dtype(dtype)?
            .contiguous()?
            .reshape((count * PANEL, n))?
            .narrow(0, 0, self.out_dim)?
            .contiguous()?)
    }
}

/// `x · wᵀ` for each of several weights sharing `x` `[rows, in]`, one parallel pass over all
/// their panels; `None` unless `x` is f32 on the CPU with no gradient tracked and every weight
/// matches its width and shares one dtype.
pub fn panel_matmuls<const N: usize>(
    x: &Tensor,
    weights: [&PanelWeight; N],
) -> Result<Option<[Tensor; N]>> {
    let Ok((rows, k)) = x.dims2() else {
        return Ok(None);
    };
    let dtype = weights.first().map(|w| w.dtype());
    if N == 0 || rows == 0 || k == 0 || !applies_to(x) || x.track_op() {
        return Ok(None);
    }
    if weights
        .iter()
        .any(|w| w.in_dim != k || Some(w.dtype()) != dtype)
    {
        return Ok(None);
    }
    let x = x.contiguous()?;
    let mut outputs: Vec<Vec<f32>> = weights
        .iter()
        .map(|w| vec![0f32; rows * w.out_dim])
        .collect();
    let packed = with_slices::<f32, 1, _>([&x], |[x]| pack_rows(x, rows, k))?;
    match dtype {
        Some(DType::BF16) => products::<bf16, N>(&packed, weights, &mut outputs)?,
        _ => products::<f32, N>(&packed, weights, &mut outputs)?,
    }
    let mut results = Vec::with_capacity(N);
    for (out, w) in outputs.into_iter().zip(weights) {
        results.push(Tensor::from_vec(out, (rows, w.out_dim), x.device())?);
    }
    Ok(results.try_into().ok())
}

/// The rows of `w` `[out, in]` as panels `[⌈out / 32⌉, in, 32]` (layout in [`PanelWeight`]),
/// a parallel task per panel.
fn pack_columns<W: Weight>(w: &[W], k: usize) -> Vec<W> {
    let count = (w.len() / k.max(1)).div_ceil(PANEL);
    let mut panels = vec![W::from_f64(0.0); count * k * PANEL];
    panels
        .par_chunks_mut((k * PANEL).max(1))
        .zip(w.par_chunks((k * PANEL).max(1)))
        .for_each(|(panel, rows)| {
            for (c, row) in rows.chunks_exact(k).enumerate() {
                let position = position::<W>(c);
                for (i, &v) in row.iter().enumerate() {
                    panel[i * PANEL + position] = v;
                }
            }
        });
    panels
}

/// `x` `[rows, in]` regrouped for the kernel: groups of up to `ROW_GROUP` rows, each stored
/// `[in, group]`, so that a step's inputs are adjacent.
fn pack_rows(x: &[f32], rows: usize, k: usize) -> Vec<f32> {
    let mut packed = vec![0f32; rows * k];
    for (g, group) in packed.chunks_mut(ROW_GROUP * k).enumerate() {
        let size = group.len() / k;
        for r in 0..size {
            let row = &x[(g * ROW_GROUP + r) * k..][..k];
            for (i, &v) in row.iter().enumerate() {
                group[i * size + r] = v;
            }
        }
    }
    packed
}

/// Where a task writes: the outputs `[rows, out]` of one weight, shared by the tasks of its
/// panels, each of which writes its own 32 columns.
#[derive(Clone, Copy)]
struct OutputPtr(*mut f32);

// SAFETY: tasks write disjoint columns of the output (one panel each).
unsafe impl Send for OutputPtr {}
unsafe impl Sync for OutputPtr {}

/// Fills each output with `x · wᵀ`, a parallel task per panel.
fn products<W: Weight, const N: usize>(
    packed: &[f32],
    weights: [&PanelWeight; N],
    outputs: &mut [Vec<f32>],
) -> Result<()> {
    let tensors = weights.map(|w| &w.panels);
    with_slices::<W, N, _>(tensors, |panels| {
        let mut tasks = Vec::new();
        for ((w, data), out) in weights.iter().zip(panels).zip(outputs.iter_mut()) {
            let (k, n) = (w.in_dim, w.out_dim);
            let ptr = OutputPtr(out.as_mut_ptr());
            for (p, panel) in data.chunks_exact(k * PANEL).enumerate() {
                tasks.push((panel, ptr, p * PANEL, k, n));
            }
        }
        tasks.into_par_iter().for_each(|(panel, out, col, k, n)| {
            let cols = (n - col).min(PANEL);
            let mut block = [0f32; ROW_GROUP * PANEL];
            for (g, x) in packed.chunks(ROW_GROUP * k).enumerate() {
                let size = x.len() / k;
                panel_block(x, panel, &mut block[..size * PANEL], size, k, g == 0);
                for r in 0..size {
                    let row = g * ROW_GROUP + r;
                    // SAFETY: `row < rows`, `col + cols ≤ n`, and no other task writes these
                    // columns (one task per panel).
                    let dst =
                        unsafe { std::slice::from_raw_parts_mut(out.0.add(row * n + col), cols) };
                    dst.copy_from_slice(&block[r * PANEL..][..cols]);
                }
            }
        });
    })
}

/// `out[r·32 + c] = x_r · w_c` for the `rows ≤ 8` inputs of a group (`x` `[k, rows]`) and the 32
/// columns of a panel.
fn panel_block<W: Weight>(
    x: &[f32],
    panel: &[W],
    out: &mut [f32],
    rows: usize,
    k: usize,
    prefetch: bool,
) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        // SAFETY: the CPU has AVX-512F (checked above).
        unsafe { avx512::panel_block(x, panel, out, rows, k, prefetch) };
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU has AVX2 and FMA (checked above).
        unsafe { avx2::panel_block(x, panel, out, rows, k) };
        return;
    }
    portable_block(x, panel, out, rows, k);
}

/// The panel column held at position `i` of a step's 32 stored weights.
fn column<W: Weight>(i: usize) -> usize {
    if W::BF16 {
        i / 2 + (i % 2) * (PANEL / 2)
    } else {
        i
    }
}

/// Where panel column `c` is held among a step's 32 stored weights (the inverse of [`column`]).
fn position<W: Weight>(c: usize) -> usize {
    if W::BF16 {
        (c % (PANEL / 2)) * 2 + c / (PANEL / 2)
    } else {
        c
    }
}

/// [`panel_block`] without SIMD intrinsics.
fn portable_block<W: Weight>(x: &[f32], panel: &[W], out: &mut [f32], rows: usize, k: usize) {
    out.fill(0.0);
    for (xs, ws) in x.chunks_exact(rows).zip(panel.chunks_exact(PANEL)).take(k) {
        for (r, &xv) in xs.iter().enumerate() {
            for (i, w) in ws.iter().enumerate() {
                out[r * PANEL + column::<W>(i)] += xv * w.to_f64() as f32;
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    use super::{Weight, PANEL, PREFETCH_STEPS};

    /// Dispatches on the group's size, so that the accumulators stay in registers.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn panel_block<W: Weight>(
        x: &[f32],
        panel: &[W],
        out: &mut [f32],
        rows: usize,
        k: usize,
        prefetch: bool,
    ) {
        assert!(x.len() >= rows * k && panel.len() >= k * PANEL && out.len() >= rows * PANEL);
        let (x, w, out) = (x.as_ptr(), panel.as_ptr(), out.as_mut_ptr());
        match rows {
            8 => rows_block::<W, 8>(x, w, out, k, prefetch),
            7 => rows_block::<W, 7>(x, w, out, k, prefetch),
            6 => rows_block::<W, 6>(x, w, out, k, prefetch),
            5 => rows_block::<W, 5>(x, w, out, k, prefetch),
            4 => rows_block::<W, 4>(x, w, out, k, prefetch),
            3 => rows_block::<W, 3>(x, w, out, k, prefetch),
            2 => rows_block::<W, 2>(x, w, out, k, prefetch),
            _ => rows_block::<W, 1>(x, w, out, k, prefetch),
        }
    }

    /// `R` rows × 32 columns: per step, one panel row of weights (two vectors) and `R`
    /// broadcast inputs into `2R` accumulators.
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn rows_block<W: Weight, const R: usize>(
        x: *const f32,
        w: *const W,
        out: *mut f32,
        k: usize,
        prefetch: bool,
    ) {
        let mut acc = [[_mm512_setzero_ps(); 2]; R];
        let ahead = w.wrapping_add(PREFETCH_STEPS * PANEL).cast::<i8>();
        for i in 0..k {
            if prefetch {
                // A step is one cache line of bf16 weights, two of f32. Past the end of the
                // weights the address is never dereferenced (a prefetch does not fault).
                let line = ahead.wrapping_add(i * PANEL * std::mem::size_of::<W>());
                _mm_prefetch::<_MM_HINT_T0>(line);
                if !W::BF16 {
                    _mm_prefetch::<_MM_HINT_T0>(line.wrapping_add(64));
                }
            }
            let [lo, hi] = load32(w.add(i * PANEL));
            let xs = x.add(i * R);
            for (r, acc) in acc.iter_mut().enumerate() {
                let xv = _mm512_set1_ps(*xs.add(r));
                acc[0] = _mm512_fmadd_ps(xv, lo, acc[0]);
                acc[1] = _mm512_fmadd_ps(xv, hi, acc[1]);
            }
        }
        for (r, acc) in acc.iter().enumerate() {
            _mm512_storeu_ps(out.add(r * PANEL), acc[0]);
            _mm512_storeu_ps(out.add(r * PANEL + 16), acc[1]);
        }
    }

    /// The 32 weights of a panel step as f32, columns 0–15 and 16–31: a bf16 is the high half
    /// of the f32 with the same bits, and lane `c` holds columns `c` (low) and `16 + c` (high).
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn load32<W: Weight>(p: *const W) -> [__m512; 2] {
        if W::BF16 {
            let v = _mm512_loadu_si512(p.cast());
            let lo = _mm512_slli_epi32::<16>(v);
            let hi = _mm512_and_si512(v, _mm512_set1_epi32(0xFFFF_0000u32 as i32));
            [_mm512_castsi512_ps(lo), _mm512_castsi512_ps(hi)]
        } else {
            let p = p.cast::<f32>();
            [_mm512_loadu_ps(p), _mm512_loadu_ps(p.add(16))]
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use super::{Weight, PANEL};

    /// Half a panel (16 columns) at a time, up to four rows a pass: 8 accumulators of AVX2's 16
    /// registers.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn panel_block<W: Weight>(
        x: &[f32],
        panel: &[W],
        out: &mut [f32],
        rows: usize,
        k: usize,
    ) {
        assert!(x.len() >= rows * k && panel.len() >= k * PANEL && out.len() >= rows * PANEL);
        let (x, w, out) = (x.as_ptr(), panel.as_ptr(), out.as_mut_ptr());
        for half in 0..2 {
            let mut r = 0;
            while r < rows {
                let (x, out) = (x.add(r), out.add(r * PANEL + half * 16));
                match rows - r {
                    1 => pass::<W, 1>(x, rows, w, half, out, k),
                    2 => pass::<W, 2>(x, rows, w, half, out, k),
                    3 => pass::<W, 3>(x, rows, w, half, out, k),
                    _ => pass::<W, 4>(x, rows, w, half, out, k),
                }
                r += 4;
            }
        }
    }

    /// `R` rows (stride `rows` in `x`) × the 16 columns of `half`.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn pass<W: Weight, const R: usize>(
        x: *const f32,
        rows: usize,
        w: *const W,
        half: usize,
        out: *mut f32,
        k: usize,
    ) {
        let mut acc = [[_mm256_setzero_ps(); 2]; R];
        for i in 0..k {
            let [a, b] = load16(w.add(i * PANEL), half);
            let xs = x.add(i * rows);
            for (r, acc) in acc.iter_mut().enumerate() {
                let xv = _mm256_broadcast_ss(&*xs.add(r));
                acc[0] = _mm256_fmadd_ps(xv, a, acc[0]);
                acc[1] = _mm256_fmadd_ps(xv, b, acc[1]);
            }
        }
        for (r, acc) in acc.iter().enumerate() {
            _mm256_storeu_ps(out.add(r * PANEL), acc[0]);
            _mm256_storeu_ps(out.add(r * PANEL + 8), acc[1]);
        }
    }

    /// Columns `16·half .. 16·half + 16` of a panel step as f32 (see the AVX-512 `load32`).
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn load16<W: Weight>(p: *const W, half: usize) -> [__m256; 2] {
        if W::BF16 {
            let (a, b) = (
                _mm256_loadu_si256(p.cast()),
                _mm256_loadu_si256(p.cast::<__m256i>().add(1)),
            );
            let widen = |v: __m256i| {
                _mm256_castsi256_ps(if half == 0 {
                    _mm256_slli_epi32::<16>(v)
                } else {
                    _mm256_and_si256(v, _mm256_set1_epi32(0xFFFF_0000u32 as i32))
                })
            };
            [widen(a), widen(b)]
        } else {
            let p = p.cast::<f32>().add(16 * half);
            [_mm256_loadu_ps(p), _mm256_loadu_ps(p.add(8))]
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{max_abs_diff, seeded_randn};
    use super::*;

    #[test]
    fn panels_hold_the_weight_exactly() {
        let w = seeded_randn(&[PANEL + 7, 13], 1);
        let f32_panels = PanelWeight::new(&w, DType::F32).unwrap();
        assert_eq!(f32_panels.dims(), (PANEL + 7, 13));
        assert_eq!(
            max_abs_diff(&f32_panels.to_dense(DType::F32).unwrap(), &w),
            0.0
        );
        let rounded = w
            .to_dtype(DType::BF16)
            .unwrap()
            .to_dtype(DType::F32)
            .unwrap();
        let bf16_panels = PanelWeight::new(&w, DType::BF16).unwrap();
        assert_eq!(bf16_panels.dtype(), DType::BF16);
        let dense = bf16_panels.to_dense(DType::F32).unwrap();
        assert_eq!(max_abs_diff(&dense, &rounded), 0.0);
    }

    #[test]
    fn matches_candle_matmul_for_every_remainder() {
        // Rows in one group, several and a partial one; k short and long; out with and without
        // a partial panel.
        for (rows, k, n) in [
            (1, 8, 4),
            (3, 13, 33),
            (8, 512, 301),
            (11, 64, 96),
            (16, 1408, 66),
            (37, 40, 70),
        ] {
            let x = seeded_randn(&[rows, k], 1);
            let w = seeded_randn(&[n, k], 2);
            for dtype in [DType::F32, DType::BF16] {
                let panels = PanelWeight::new(&w, dtype).unwrap();
                let [got] = panel_matmuls(&x, [&panels]).unwrap().expect("applies");
                let dense = panels.to_dense(DType::F32).unwrap();
                let want = x.matmul(&dense.t().unwrap()).unwrap();
                assert_eq!(got.dims(), &[rows, n]);
                // Sums of k products of O(1) terms in another order: rounding grows with k.
                let diff = max_abs_diff(&got, &want);
                assert!(diff < 1e-5 * k as f32, "{dtype:?} {rows}x{k}x{n}: {diff}");
            }
        }
    }

    /// Each SIMD kernel this CPU can run against the portable loop, for every group size.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn every_simd_kernel_the_cpu_runs_matches_the_portable_loop() {
        fn check<W: Weight>(x: &[f32], panel: &[W], rows: usize, k: usize) {
            let mut portable = vec![0f32; rows * PANEL];
            portable_block(x, panel, &mut portable, rows, k);
            let close = |got: &[f32], kernel: &str| {
                for (a, b) in got.iter().zip(&portable) {
                    assert!((a - b).abs() < 1e-5 * k as f32, "{kernel} {rows}x{k}");
                }
            };
            if std::arch::is_x86_feature_detected!("avx512f") {
                let mut out = vec![0f32; rows * PANEL];
                // SAFETY: the CPU has AVX-512F (checked above).
                unsafe { avx512::panel_block(x, panel, &mut out, rows, k, true) };
                close(&out, "avx512");
            }
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                let mut out = vec![0f32; rows * PANEL];
                // SAFETY: the CPU has AVX2 and FMA (checked above).
                unsafe { avx2::panel_block(x, panel, &mut out, rows, k) };
                close(&out, "avx2");
            }
        }
        for rows in 1..=ROW_GROUP {
            let k = 29 + rows;
            let x = seeded_randn(&[k, rows], 1).flatten_all().unwrap();
            let x = x.to_vec1::<f32>().unwrap();
            let w = seeded_randn(&[PANEL, k], 2);
            for dtype in [DType::F32, DType::BF16] {
                let panels = PanelWeight::new(&w, dtype)
                    .unwrap()
                    .panels
                    .flatten_all()
                    .unwrap();
                match dtype {
                    DType::BF16 => check(&x, &panels.to_vec1::<bf16>().unwrap(), rows, k),
                    _ => check(&x, &panels.to_vec1::<f32>().unwrap(), rows, k),
                }
            }
        }
    }

    #[test]
    fn several_weights_in_one_pass_give_each_product() {
        let x = seeded_randn(&[8, 96], 1);
        let ws = [70, 32, 7].map(|n| seeded_randn(&[n, 96], n as u64));
        let panels = ws
            .each_ref()
            .map(|w| PanelWeight::new(w, DType::BF16).unwrap());
        let ys = panel_matmuls(&x, panels.each_ref())
            .unwrap()
            .expect("applies");
        for (y, p) in ys.iter().zip(&panels) {
            // The same kernel on the same rows: bit for bit what one weight alone gives.
            let [alone] = panel_matmuls(&x, [p]).unwrap().unwrap();
            assert_eq!(max_abs_diff(y, &alone), 0.0);
        }
        let f32_panels = PanelWeight::new(&ws[0], DType::F32).unwrap();
        assert!(panel_matmuls(&x, [&panels[0], &f32_panels])
            .unwrap()
            .is_none());
        let narrower = PanelWeight::new(&seeded_randn(&[4, 95], 5), DType::BF16).unwrap();
        assert!(panel_matmuls(&x, [&narrower]).unwrap().is_none());
    }
}
