#!/usr/bin/env python3
"""A dynamic inventory script, as Ansible runs it: --list prints every group and host."""

import json
import sys

ARC = {
    "arc_tenant_id": "11111111-2222-3333-4444-555555555555",
    "arc_subscription_id": "66666666-7777-8888-9999-000000000000",
    "arc_resource_group": "rg-arc",
    "arc_location": "westeurope",
    "arc_sp_client_id": "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee",
    "arc_sp_secret_env": "ARC_SP_SECRET",
}

if "--host" in sys.argv:
    print("{}")
else:
    print(json.dumps({
        "web": {"hosts": ["s1", "s2"], "vars": {"ansible_user": "scripted"}},
        "all": {"vars": ARC},
        "_meta": {"hostvars": {"s1": {"ansible_port": 2201}}},
    }))
