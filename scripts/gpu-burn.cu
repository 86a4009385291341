// A small GPU load for scripts/gpu-smoke.sh: holds about 2 GiB of device memory and keeps the SMs
// busy with fused multiply-adds for the given number of seconds.
//   nvcc -O2 -o gpu-burn scripts/gpu-burn.cu && ./gpu-burn 20
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cuda_runtime.h>

__global__ void burn(float *data, size_t n, int rounds) {
  size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
  if (i >= n) return;
  float x = data[i];
  for (int r = 0; r < rounds; r++) x = x * 1.000001f + 0.000001f;
  data[i] = x;
}

int main(int argc, char **argv) {
  double seconds = argc > 1 ? atof(argv[1]) : 20.0;
  size_t n = (size_t)512 * 1024 * 1024;  // 2 GiB of floats
  float *data = nullptr;
  if (cudaMalloc(&data, n * sizeof(float)) != cudaSuccess) {
    fprintf(stderr, "cudaMalloc failed\n");
    return 1;
  }
  cudaMemset(data, 0, n * sizeof(float));
  auto start = std::chrono::steady_clock::now();
  int launches = 0;
  while (std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() < seconds) {
    burn<<<(unsigned)((n + 255) / 256), 256>>>(data, n, 64);
    cudaDeviceSynchronize();
    launches++;
  }
  printf("gpu-burn: %d launches in %.1f s\n", launches, seconds);
  cudaFree(data);
  return 0;
}
