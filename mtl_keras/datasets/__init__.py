"""Benchmark data: the MMoE paper's synthetic tasks, a synthetic recommender funnel, UCI census-income."""

from mtl_keras.datasets.census import CensusIncome, CensusSplit, census_income
from mtl_keras.datasets.recsys import DEVICES, synthetic_recsys, synthetic_recsys_spec
from mtl_keras.datasets.synthetic import synthetic_tasks

__all__ = ["CensusIncome", "CensusSplit", "DEVICES", "census_income", "synthetic_recsys", "synthetic_recsys_spec", "synthetic_tasks"]
