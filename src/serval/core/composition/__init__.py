"""Composition: the layers a version's servable is built from, the composite servables
(pipeline, cascade, ensemble) that call other models, and the provider through which they
lease those models' servables."""
