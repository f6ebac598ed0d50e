"""Evaluation harness: any chat model on the report's medical benchmarks, closed-book or with
evidex retrieval, with resumable per-item results, a summary table and a bar chart."""
