"""A benchmark's machine record names the CPU with its strongest matrix instruction set: two CPUs that both call
themselves "AMD EPYC" ran bf16 at 2.1x and at 0.14x fp32."""
from bench.common import cpu_description

CPUINFO = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC
flags\t\t: fpu sse2 avx avx2 {extra}
bogomips\t: 4491.53

processor\t: 1
model name\t: AMD EPYC
flags\t\t: fpu sse2 avx avx2 {extra}
"""


def test_the_strongest_matrix_instruction_set_follows_the_model_name():
    assert cpu_description(CPUINFO.format(extra="")) == "AMD EPYC (AVX2)"
    assert cpu_description(CPUINFO.format(extra="avx512f avx512bw")) == "AMD EPYC (AVX-512)"
    assert cpu_description(CPUINFO.format(extra="avx512f avx512_bf16")) == "AMD EPYC (AVX512-BF16)"
    assert cpu_description(CPUINFO.format(extra="avx512f avx512_bf16 amx_tile amx_bf16")) == "AMD EPYC (AMX-BF16)"
    assert cpu_description("model name\t: Some CPU\nflags\t: fpu sse2\n") == "Some CPU"
    assert cpu_description("") == "unknown"

