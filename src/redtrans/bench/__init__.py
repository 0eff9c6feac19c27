"""The benchmark harness: suites, systems, sacrebleu scores per slice, SNS fidelity, significance, reports."""

from redtrans.bench.run import BenchConfig, BenchError, run_bench
from redtrans.bench.suites import Segment, Suite, SuiteError, load_suite, select
from redtrans.bench.systems import SystemSpec, SystemSpecError, parse_system

__all__ = [
    "BenchConfig",
    "BenchError",
    "Segment",
    "Suite",
    "SuiteError",
    "SystemSpec",
    "SystemSpecError",
    "load_suite",
    "parse_system",
    "run_bench",
    "select",
]
