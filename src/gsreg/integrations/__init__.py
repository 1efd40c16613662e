"""Integrations with other frameworks, each behind its own optional extra.

Importing :mod:`gsreg` or this package imports none of them; import the submodule you need:

    from gsreg.integrations.lightning import GSRCallback   # pip install gsreg[lightning]
    from gsreg.integrations.transformers import GSRCallback, GSRTrainer
                                                # pip install gsreg[transformers]
"""
