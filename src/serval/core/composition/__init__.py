"""Composition: the layers a version's servable is built from, and the provider through which
a composite servable leases the servables of other models."""
