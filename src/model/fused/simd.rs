//! Vectorisable building blocks for the softmax-shaped loops: `exp`, row max and row sum, and
//! a way to compile a loop for AVX2.
//!
//! `f32::exp` is a libm call per element, which keeps the compiler from vectorising a loop; a
//! `[2048, 32000]` block of logits needs 66M of them per pass. This is Cephes' `expf` (range
//! reduction to `[-ln2/2, ln2/2]`, a degree-6 polynomial, the exponent written into the bits),
//! written branch-free so that the loops using it compile to SIMD; relative error ≈ 1e-7.

const LOG2E: f32 = std::f32::consts::LOG2_E;
// ln 2 split in two so that `x - n·ln2` stays exact in f32 (Cephes' C1 and C2).
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;
// Adding 1.5·2^23 rounds an f32 of magnitude < 2^22 to the nearest integer, in its low bits.
const ROUNDER: f32 = 12_582_912.0;

/// `e^x`; inputs below −87.3 give 0 (where f32's `exp` goes subnormal) and inputs above 88.0
/// give about 1.7e38 (harmless where the result is a softmax weight).
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    let underflow = x < -87.3;
    let x = x.clamp(-87.3, 88.0);
    let t = x * LOG2E + ROUNDER;
    let n = t - ROUNDER;
    let r = x - n * LN2_HI - n * LN2_LO;
    let p = 1.987_569_2e-4;
    let p = p * r + 1.398_2e-3;
    let p = p * r + 8.333_452e-3;
    let p = p * r + 4.166_579_6e-2;
    let p = p * r + 1.666_666_5e-1;
    let p = p * r + 0.5; // Cephes: 5.0000001201e-1, which rounds to 0.5 in f32
    let y = p * r * r + r + 1.0;
    // The integer n sits in t's low mantissa bits; shifted into the exponent field it is 2^n.
    let n_int = t.to_bits().wrapping_sub(ROUNDER.to_bits()) as i32;
    let scale = f32::from_bits(((n_int + 127) as u32) << 23);
    if underflow {
        0.0
    } else {
        y * scale
    }
}

/// The largest element (−∞ for an empty slice), in eight lanes so that the loop vectorises
/// (a plain `fold` with `f32::max` stays scalar).
#[inline(always)]
pub fn max(x: &[f32]) -> f32 {
    let mut lanes = [f32::NEG_INFINITY; 8];
    let mut blocks = x.chunks_exact(8);
    for block in &mut blocks {
        for i in 0..8 {
            lanes[i] = if block[i] > lanes[i] {
                block[i]
            } else {
                lanes[i]
            };
        }
    }
    let tail = blocks
        .remainder()
        .iter()
        .fold(f32::NEG_INFINITY, |m, &v| m.max(v));
    lanes.iter().fold(tail, |m, &v| m.max(v))
}

/// The sum of the elements, in eight lanes (a plain `sum` stays scalar: float addition does not
/// reassociate).
#[inline(always)]
pub fn sum(x: &[f32]) -> f32 {
    let mut lanes = [0f32; 8];
    let mut blocks = x.chunks_exact(8);
    for block in &mut blocks {
        for i in 0..8 {
            lanes[i] += block[i];
        }
    }
    lanes.iter().sum::<f32>() + blocks.remainder().iter().sum::<f32>()
}

/// The dot product of two equally long slices, in eight lanes.
#[inline(always)]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0f32; 8];
    let (mut ca, mut cb) = (a.chunks_exact(8), b.chunks_exact(8));
    for (a8, b8) in (&mut ca).zip(&mut cb) {
        for l in 0..8 {
            lanes[l] += a8[l] * b8[l];
        }
    }
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(a, b)| a * b)
        .sum();
    lanes.iter().sum::<f32>() + tail
}

/// Runs `body` compiled for AVX2 + FMA when the CPU has them (the loops in `body` then use 8-wide
/// vectors), else as is. `body` must be `#[inline(always)]` code for this to take effect.
#[inline(always)]
pub fn with_simd<R>(body: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx2,fma")]
        unsafe fn avx2<R>(body: impl FnOnce() -> R) -> R {
            body()
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: the CPU supports the features the function is compiled for (checked above).
            return unsafe { avx2(body) };
        }
    }
    body()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_std_exp_over_the_softmax_range() {
        let mut worst = 0.0f64;
        let mut x = -87.0f32;
        while x < 88.0 {
            let got = exp(x) as f64;
            let want = (x as f64).exp();
            worst = worst.max(((got - want) / want).abs());
            x += 0.001_7;
        }
        assert!(worst < 3e-7, "worst relative error {worst}");
        assert_eq!(exp(0.0), 1.0);
        assert_eq!(exp(-1e4), 0.0);
        assert_eq!(exp(f32::MIN), 0.0);
        assert!(exp(1e4).is_finite());
    }

    #[test]
    fn lane_reductions_match_plain_ones() {
        for n in [0usize, 1, 7, 8, 9, 100] {
            let x: Vec<f32> = (0..n).map(|i| ((i * 37 % 11) as f32 - 5.0) * 0.5).collect();
            assert_eq!(max(&x), x.iter().cloned().fold(f32::NEG_INFINITY, f32::max));
            assert!((sum(&x) - x.iter().sum::<f32>()).abs() < 1e-4);
        }
    }
}
