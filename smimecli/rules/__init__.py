"""Rules: which recipients get encrypted mail, with which certificate.

One thing per module: ``patterns`` (address normalisation, the wildcard matcher),
``model`` (the rule set), ``lines`` and ``load`` (reading and validating the rules file),
``check`` (shadowed patterns), ``plan`` (recipient -> rule -> certificate), ``decision``
(the plan as values), ``message`` (what the rules read from a message) and ``dryrun``
(``rules test``).
"""
