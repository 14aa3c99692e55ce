"""Stage-2 verifier training: does a stored text want the same answer as a query?"""
