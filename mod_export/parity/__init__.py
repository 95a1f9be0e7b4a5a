"""Parity judgements shared by export validation, `mod-export validate`, precision reports, benchmarks and
tests: margin-aware routing comparison, non-finite-aware numeric errors, router health. numpy only."""
