-- Vintage of every loaded reference layer (geodata), by name.
SELECT name, vintage FROM reference_layers
