"""Cryptography for veilmatch: homomorphic matching, keys, signatures, at-rest encryption.

Only this package imports the SEAL bindings; the rest of the code sees its types.
"""
