"""Model fitting, evaluation, MLflow logging, the quality gate and the back-test runner.

Imports `scoring`; never imported by `scoring` or `serve` (DESIGN §6).
"""
