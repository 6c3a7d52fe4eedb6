SELECT name, vintage
  FROM reference_layers
