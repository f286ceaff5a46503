"""Test code shared between test folders: file writers for every format (writers), tiny models
and data (tiny_models, tiny_data, physics_models), fine-tuning fixtures (ft_helpers), the
reader fuzzer (fuzzlib) and a torch-free reference unpickler (demo_unpickle).

Importable as ``helpers.<module>``: pyproject.toml puts tests/ on pytest's ``pythonpath``.
"""
