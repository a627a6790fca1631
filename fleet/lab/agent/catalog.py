"""The AZCM codes the simulator can fail with: short name (printed as ``AZCMnnnn: Name``) and a
realistic reason line for the generic ``azcm`` scenario."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CodeInfo:
    name: str
    reason: str

    def exit_status(self, code: str) -> int:
        return int(code.removeprefix("AZCM"))


CODES: dict[str, CodeInfo] = {
    "AZCM0001": CodeInfo("Default Error", "An unexpected error occurred while connecting"),
    "AZCM0002": CodeInfo("Internal Error", "internal agent error: failed to read agent state"),
    "AZCM0003": CodeInfo("Operation Not Supported",
                         "the requested operation is not supported on this platform"),
    "AZCM0004": CodeInfo("Arc Proxy Not Running",
                         "the Azure Arc proxy service (arcproxyd) is not running"),
    "AZCM0005": CodeInfo("No File Logger",
                         "open /var/opt/azcmagent/log/azcmagent.log: no space left on device"),
    "AZCM0006": CodeInfo("Initialization Failed", "agent initialization failed"),
    "AZCM0011": CodeInfo("Control C Pressed", "operation cancelled by the user"),
    "AZCM0012": CodeInfo("Invalid Access Token", "the access token provided is invalid or expired"),
    "AZCM0016": CodeInfo("Missing Mandatory Paremeter",
                         'required flag(s) "subscription-id" not set'),
    "AZCM0018": CodeInfo("Admin Privileges Needed",
                         "This command must be run with administrator/root privileges"),
    "AZCM0019": CodeInfo("Configuration File Not Found",
                         "open /etc/arcfleet/missing.json: no such file or directory"),
    "AZCM0020": CodeInfo("Unknown Region", "location 'westeuropa' is not a supported region"),
    "AZCM0023": CodeInfo("Invalid Argument",
                         "invalid value for --tags: tags must be key=value pairs"),
    "AZCM0026": CodeInfo(
        "Network Error",
        'Get "https://gbl.his.arc.azure.com/discovery?location=westeurope&api-version=2.1": '
        "dial tcp 20.50.1.17:443: i/o timeout"),
    "AZCM0027": CodeInfo("Configuration Conflict",
                         "config conflict: proxy.url is set but proxy.bypass includes Arc"),
    "AZCM0028": CodeInfo("TPM Open Failed", "failed to open TPM device /dev/tpmrm0"),
    "AZCM0041": CodeInfo("Failed to Get Access Token",
                         "Failed to acquire authorization token from SPN"),
    "AZCM0042": CodeInfo("Failed to Create Resource",
                         "Failed to AzcmagentConnect ARM resource"),
    "AZCM0043": CodeInfo("Failed to Delete Resource",
                         "Failed to delete the Azure resource: Status Code=403"),
    "AZCM0044": CodeInfo(
        "Resource Already Exists",
        "A resource with the same name already exists in resource group rg-arclab"),
    "AZCM0045": CodeInfo("Failed to Update Reconnect Public Key",
                         "failed to update the service with the new public key"),
    "AZCM0061": CodeInfo("Agent Communication Error",
                         "dial unix /var/opt/azcmagent/socks/himds.sock: connect: "
                         "connection refused"),
    "AZCM0062": CodeInfo("Failed to Onboard Server to Azure",
                         "An error occurred while connecting the server"),
    "AZCM0063": CodeInfo("Failed to Disconnect Server from Azure",
                         "An error occurred while disconnecting the server"),
    "AZCM0064": CodeInfo("Unable to Obtain Change Token",
                         "Failed to obtain change token: the agent service (himds) is not "
                         "responding"),
    "AZCM0065": CodeInfo("Unable to Obtain Agent Metadata",
                         "Unable to obtain agent metadata from himds"),
    "AZCM0066": CodeInfo("Unable to Obtain Agent Status",
                         "Unable to obtain agent status from himds"),
    "AZCM0067": CodeInfo("Machine Already Connected",
                         "The machine is already connected to Azure. Run azcmagent disconnect "
                         "first"),
    "AZCM0068": CodeInfo("Unable to Fetch Subscription ID",
                         "Subscription 'Production' could not be resolved to a subscription ID"),
    "AZCM0069": CodeInfo("Failed to Update Local Config",
                         "open /var/opt/azcmagent/agentconfig.json: permission denied"),
    "AZCM0070": CodeInfo("Unable to Obtain Local Configuration",
                         "Unable to obtain local config: himds is not running"),
    "AZCM0072": CodeInfo("Extension Tool Error", "an error occurred while running an extension"),
    "AZCM0073": CodeInfo("Unable to Obtain Partner Configuration",
                         "unable to obtain partner configuration properties"),
    "AZCM0074": CodeInfo("Failed to Add Extension", "an error occurred while adding extensions"),
    "AZCM0075": CodeInfo("Unable to Obtain Cloud Configuration",
                         "unable to obtain cloud configuration for AzureCloud"),
    "AZCM0076": CodeInfo("TPM Connect Failed",
                         "failed to connect the machine using TPM-based authentication"),
    "AZCM0081": CodeInfo("Failed to Get MSI Certificate from HIS",
                         "An error occurred while downloading the managed identity certificate"),
    "AZCM0082": CodeInfo("Failed to Get MSI Certificate Using TPM",
                         "failed to get the managed identity certificate using TPM"),
    "AZCM0083": CodeInfo("Failed to Register Persistent Credential",
                         "failed to register the Arc persistent credential with the service"),
    "AZCM0101": CodeInfo("Command Execution Error", "the command was not parsed successfully"),
    "AZCM0102": CodeInfo("Failed to Generate Resource Name",
                         "unable to retrieve the computer hostname"),
    "AZCM0103": CodeInfo("Failed to Generate RSA Keys",
                         "An error occurred while generating RSA keys"),
    "AZCM0105": CodeInfo("Failed to Get Signed Message", "failed to get the signed message"),
    "AZCM0107": CodeInfo("Failed to Retrieve Certificate",
                         "failed to retrieve the certificate from the store"),
    "AZCM0108": CodeInfo("Failed to Process TPM Keys", "failed to process TPM keys"),
}


def code_info(code: str) -> CodeInfo:
    return CODES.get(code, CodeInfo("Default Error", f"the agent failed with {code}"))
