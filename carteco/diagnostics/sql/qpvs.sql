SELECT code, name
  FROM territories WHERE level = 'qpv' AND departement_code = :d
 ORDER BY code
