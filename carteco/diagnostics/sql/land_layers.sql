-- Description and vintage of every loaded land layer, by source.
SELECT source, description, vintage, loaded_at FROM land_layers
