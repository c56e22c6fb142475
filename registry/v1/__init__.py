"""Generated from protos/ by scripts/gen_protos.py — do not edit.

Run ``python scripts/gen_protos.py`` after changing a .proto file.
"""
