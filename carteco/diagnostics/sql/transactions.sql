SELECT commune_code, kind, year, price_m2, valeur_fonciere, nature_mutation, qpv_code
  FROM land_transactions WHERE departement_code = :dep
