// Host stand-ins for the CUDA features of the project's kernels (tools/cuda_emulator).
//
// A block runs as one host thread per CUDA thread: __syncthreads is a barrier of the block,
// and the warp-wide instructions (shuffles, mma.sync, ldmatrix) meet at a barrier of the
// warp's 32 threads, exchange their registers and compute each lane's result from the
// fragment layouts of the PTX manual. __shared__ variables become statics: blocks run one
// after another.
#include <cuda_bf16.h>

#include <barrier>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#define __global__
#define __device__
#define __forceinline__ inline
#define __align__(n) __attribute__((aligned(n)))
#define __shared__ static
#define __grid_constant__

using std::max;
using std::min;
typedef __nv_bfloat16 bf16;

struct Index3 {
  unsigned x, y, z;
};
thread_local Index3 threadIdx, blockIdx;
Index3 blockDim, gridDim;

static std::barrier<>* block_barrier;
inline void __syncthreads() { block_barrier->arrive_and_wait(); }

// What the lanes of one warp exchange at a warp-wide instruction.
struct Warp {
  std::barrier<>* meet;
  float values[32];
  uint32_t a[32][4], b[32][2];
  const bf16* rows[32];
};
static Warp warps[32];

inline Warp& my_warp() { return warps[threadIdx.x / 32]; }
inline int my_lane() { return threadIdx.x % 32; }

inline float __shfl_xor_sync(unsigned, float x, int offset) {
  Warp& w = my_warp();
  w.meet->arrive_and_wait();
  w.values[my_lane()] = x;
  w.meet->arrive_and_wait();
  const float got = w.values[my_lane() ^ offset];
  w.meet->arrive_and_wait();
  return got;
}

inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
inline float __expf(float x) { return expf(x); }
inline float __logf(float x) { return logf(x); }
inline float __int_as_float(int bits) {
  float value;
  memcpy(&value, &bits, 4);
  return value;
}

static std::mutex atomics;
inline float atomicAdd(float* to, float value) {
  std::lock_guard<std::mutex> lock(atomics);
  const float old = *to;
  *to += value;
  return old;
}

inline float half_of(uint32_t bits, int high) {
  const uint32_t wide = (high ? bits >> 16 : bits & 0xffffu) << 16;
  float value;
  memcpy(&value, &wide, 4);
  return value;
}

inline uint32_t pair_bits(bf16 lo, bf16 hi) {
  uint16_t l, h;
  memcpy(&l, &lo, 2);
  memcpy(&h, &hi, 2);
  return uint32_t(l) | (uint32_t(h) << 16);
}

// c (16x8) += a (16x16) b (16x8): lane g = lane / 4, t = lane % 4 holds a's (g, 2t..),
// (g+8, 2t..), (g, 2t+8..), (g+8, 2t+8..), b's (2t.., g) and (2t+8.., g), c's (g, 2t..) and
// (g+8, 2t..).
inline void mma16816(float* c, const uint32_t* a, uint32_t b0, uint32_t b1) {
  Warp& w = my_warp();
  w.meet->arrive_and_wait();
  for (int i = 0; i < 4; ++i) w.a[my_lane()][i] = a[i];
  w.b[my_lane()][0] = b0;
  w.b[my_lane()][1] = b1;
  w.meet->arrive_and_wait();
  float A[16][16], B[16][8];
  for (int l = 0; l < 32; ++l) {
    const int g = l / 4, t = l % 4;
    for (int h = 0; h < 2; ++h) {
      A[g][2 * t + h] = half_of(w.a[l][0], h);
      A[g + 8][2 * t + h] = half_of(w.a[l][1], h);
      A[g][2 * t + 8 + h] = half_of(w.a[l][2], h);
      A[g + 8][2 * t + 8 + h] = half_of(w.a[l][3], h);
      B[2 * t + h][g] = half_of(w.b[l][0], h);
      B[2 * t + 8 + h][g] = half_of(w.b[l][1], h);
    }
  }
  w.meet->arrive_and_wait();
  const int g = my_lane() / 4, t = my_lane() % 4;
  for (int e = 0; e < 4; ++e) {
    const int row = g + (e >= 2 ? 8 : 0), col = 2 * t + (e & 1);
    float sum = 0.0f;
    for (int k = 0; k < 16; ++k) sum += A[row][k] * B[k][col];
    c[e] += sum;
  }
}

// Lanes 8i..8i+7 give tile i's row addresses; lane l gets tile i's (l/4, 2(l%4)..) or,
// transposed, (2(l%4).., l/4).
inline void ldmatrix(uint32_t* r, const bf16* row, bool transposed) {
  Warp& w = my_warp();
  w.meet->arrive_and_wait();
  w.rows[my_lane()] = row;
  w.meet->arrive_and_wait();
  const int g = my_lane() / 4, t = my_lane() % 4;
  for (int i = 0; i < 4; ++i) {
    r[i] = transposed ? pair_bits(w.rows[8 * i + 2 * t][g], w.rows[8 * i + 2 * t + 1][g])
                      : pair_bits(w.rows[8 * i + g][2 * t], w.rows[8 * i + g][2 * t + 1]);
  }
  w.meet->arrive_and_wait();
}
inline void ldmatrix_x4(uint32_t* r, const bf16* row) { ldmatrix(r, row, false); }
inline void ldmatrix_x4_trans(uint32_t* r, const bf16* row) { ldmatrix(r, row, true); }

inline float exp2_fast(float x) { return exp2f(x); }

// Every block of the grid, one after another, each with its threads; `kernel` is called by
// every thread.
template <typename Kernel>
void run_grid(Index3 grid, unsigned threads, Kernel kernel) {
  blockDim = {threads, 1, 1};
  gridDim = grid;
  std::barrier<> block(threads);
  block_barrier = &block;
  for (unsigned w = 0; w < (threads + 31) / 32; ++w) warps[w].meet = new std::barrier<>(32);
  for (unsigned z = 0; z < grid.z; ++z) {
    for (unsigned y = 0; y < grid.y; ++y) {
      for (unsigned x = 0; x < grid.x; ++x) {
        std::vector<std::thread> lanes;
        for (unsigned t = 0; t < threads; ++t) {
          lanes.emplace_back([=] {
            threadIdx = {t, 0, 0};
            blockIdx = {x, y, z};
            kernel();
          });
        }
        for (auto& lane : lanes) lane.join();
      }
    }
  }
}

// A file's bytes into fresh memory, `offset` bytes past a 64-byte boundary.
inline void* read_file(const std::string& path, size_t offset) {
  std::ifstream file(path, std::ios::binary | std::ios::ate);
  const size_t size = file.tellg();
  file.seekg(0);
  char* memory = static_cast<char*>(aligned_alloc(64, (size + offset + 127) / 64 * 64));
  file.read(memory + offset, size);
  return memory + offset;
}
