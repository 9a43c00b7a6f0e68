"""``python -m crm_common.crmctl``: the same as the ``crmctl`` console script."""
import sys

from crm_common.crmctl import main

sys.exit(main())
