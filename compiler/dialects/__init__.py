"""Lower-level dialects of the ACF compiler (``acf``: one op per ISA instruction)."""
