-- The DVF sales of a département: commune, kind, year, price per m², value.
SELECT commune_code, kind, year, price_m2, valeur_fonciere FROM land_transactions
 WHERE departement_code = :dep
