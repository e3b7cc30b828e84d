"""Out-of-domain check: each model set's in-domain reference (pooled frozen features of its
normal training inputs) and the distance of an input from it."""

from decodemo.ood.reference import (DomainCheck, DomainReference, describe_paths, features_of_paths, fit_reference,
                                    loaded_features, REFERENCE_FOLDER)

__all__ = ["DomainCheck", "DomainReference", "describe_paths", "features_of_paths", "fit_reference",
           "loaded_features", "REFERENCE_FOLDER"]
