SELECT source, description, vintage, loaded_at
  FROM land_layers
