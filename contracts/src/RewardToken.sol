// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";
import {ERC20Burnable} from "@openzeppelin/contracts/token/ERC20/extensions/ERC20Burnable.sol";
import {ERC20Capped} from "@openzeppelin/contracts/token/ERC20/extensions/ERC20Capped.sol";

/// @title tokenweave reward token
/// @notice The ERC-20 that operators earn for verified work. Only minters (the
///         RewardDistributor) create it, and never beyond `cap()`; holders may burn their own
///         (slashed stake is burned when the network has no treasury).
contract RewardToken is ERC20Capped, ERC20Burnable, AccessControl {
    /// @notice Role allowed to mint.
    bytes32 public constant MINTER_ROLE = keccak256("MINTER_ROLE");

    /// @param admin Receives DEFAULT_ADMIN_ROLE, which grants and revokes MINTER_ROLE; it does
    ///        not receive MINTER_ROLE itself.
    /// @param cap_ The hard limit on the supply, in the token's smallest unit.
    constructor(address admin, uint256 cap_) ERC20("tokenweave reward", "TWV") ERC20Capped(cap_) {
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
    }

    /// @notice Mint `amount` to `to`; reverts with ERC20ExceededCap beyond the cap.
    /// @param to The receiver.
    /// @param amount In the token's smallest unit (18 decimals).
    function mint(address to, uint256 amount) external onlyRole(MINTER_ROLE) {
        _mint(to, amount);
    }

    /// @dev The cap applies to every mint (ERC20Capped's check).
    function _update(address from, address to, uint256 value)
        internal
        override(ERC20, ERC20Capped)
    {
        super._update(from, to, value);
    }
}
