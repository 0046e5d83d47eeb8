// methods/spectral.h — SpectralQuant's bit allocation and spectrum helpers,
// shared by the method and its calibration (calib/spectral.c).
//
// A key k of stream (layer, kv head) is centered and rotated into the
// eigenbasis of the calibration keys' covariance: y = U (k - mean), U's rows
// the eigenvectors by descending eigenvalue. Dimension i gets b_i bits with
// the Lloyd-Max codebook of N(0, eig_i) (unit Gaussian codebook scaled by
// sqrt(eig_i)); b_i = 0 reconstructs 0 (the mean). The method water-fills its
// `bits` x d bits over the eigenvalues, so the record is exactly
// ceil(bits x d / 8) bytes: codes of varying width packed LSB first.
//
// Artifacts: spectral.rotation.l{l}.h{h} (d, d), spectral.mean.l{l}.h{h} (d),
// spectral.eigenvalues.l{l}.h{h} (d), spectral.d_eff (L, H).
#ifndef KVQ_SPECTRAL_H
#define KVQ_SPECTRAL_H
#include "kvq.h"

#define KVQ_SPECTRAL_MAX_BITS 8
// Per-dimension bits: target_bits > 0: greedy water-filling of
// round(target x d) bits, each next bit to argmax eig_i / 4^b_i (b_i <= 8,
// ties to the lower index); else the leading ceil(d_eff) dimensions get
// signal_bits and the rest noise_bits. eig: (d) descending; bits: (d).
void kvq_spectral_allocate(const float *eig, int d, double target_bits, int signal_bits, int noise_bits,
                           int *bits);
// Effective dimension (sum eig)^2 / sum eig^2 (0 for an all-zero spectrum).
double kvq_spectral_d_eff(const float *eig, int d);
#endif
