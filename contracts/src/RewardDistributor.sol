// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {MerkleProof} from "@openzeppelin/contracts/utils/cryptography/MerkleProof.sol";

import {IRewardErrors} from "./IRewardErrors.sol";
import {RewardToken} from "./RewardToken.sol";

/// @title tokenweave reward distributor
/// @notice The coordinator posts one Merkle root per epoch over (operator, cumulative amount)
///         leaves; an operator claims the difference between its cumulative amount and what it
///         has already been paid. Leaves use OpenZeppelin StandardMerkleTree encoding,
///         keccak256(bytes.concat(keccak256(abi.encode(account, cumulativeAmount)))), so the
///         standard tools build proofs.
contract RewardDistributor is AccessControl, IRewardErrors {
    /// @notice Role allowed to post roots.
    bytes32 public constant COORDINATOR_ROLE = keccak256("COORDINATOR_ROLE");

    /// @dev The token paid out; this contract holds its MINTER_ROLE.
    RewardToken private immutable _token;
    /// @dev The latest epoch posted; 0 before the first.
    uint64 private _latestEpoch;
    /// @dev The root of `_latestEpoch`: every claim is checked against it alone.
    bytes32 private _latestRoot;
    /// @dev What each account has been paid so far (its cumulative amount at its last claim).
    mapping(address account => uint256 amount) private _claimed;

    /// @notice A root was posted.
    /// @param epoch The epoch it closes.
    /// @param root The Merkle root of the cumulative amounts up to that epoch.
    event RootPosted(uint64 indexed epoch, bytes32 root);

    /// @notice An operator was paid.
    /// @param account The operator.
    /// @param amount What this claim paid.
    /// @param cumulativeAmount Everything the operator has been paid so far.
    event Claimed(address indexed account, uint256 amount, uint256 cumulativeAmount);

    /// @param token_ The reward token; this contract needs its MINTER_ROLE.
    /// @param admin Receives DEFAULT_ADMIN_ROLE.
    /// @param coordinator Receives COORDINATOR_ROLE.
    constructor(RewardToken token_, address admin, address coordinator) {
        if (address(token_) == address(0) || admin == address(0) || coordinator == address(0)) {
            revert Reward__ZeroAddress();
        }
        _token = token_;
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
        _grantRole(COORDINATOR_ROLE, coordinator);
    }

    /// @notice Post the root of `epoch`; epochs strictly increase.
    /// @param epoch The epoch the root closes.
    /// @param root The Merkle root over (account, cumulative amount) leaves.
    function postRoot(uint64 epoch, bytes32 root) external onlyRole(COORDINATOR_ROLE) {
        if (epoch <= _latestEpoch) revert Reward__EpochNotIncreasing(epoch, _latestEpoch);
        if (root == bytes32(0)) revert Reward__EmptyRoot();
        _latestEpoch = epoch;
        _latestRoot = root;
        emit RootPosted(epoch, root);
    }

    /// @notice Pay `account` what its leaf in the latest root owes beyond what it was paid.
    /// @dev Anyone may submit the claim; the tokens always go to `account`. A claim that would
    ///      pay nothing (the leaf was claimed already) reverts with Reward__NothingToClaim rather
    ///      than succeeding with 0, so a wasted transaction is visible to the sender.
    /// @param account The operator.
    /// @param cumulativeAmount The operator's cumulative amount in the latest root.
    /// @param proof The Merkle proof of the leaf.
    function claim(address account, uint256 cumulativeAmount, bytes32[] calldata proof) external {
        if (_latestRoot == bytes32(0)) revert Reward__NoRoot();
        bytes32 leaf = keccak256(bytes.concat(keccak256(abi.encode(account, cumulativeAmount))));
        if (!MerkleProof.verifyCalldata(proof, _latestRoot, leaf)) revert Reward__InvalidProof();
        uint256 paid = _claimed[account];
        if (cumulativeAmount <= paid) revert Reward__NothingToClaim(account, cumulativeAmount, paid);
        _pay(account, cumulativeAmount - paid, cumulativeAmount);
    }

    /// @notice The latest epoch posted (0 before the first).
    function latestEpoch() external view returns (uint64) {
        return _latestEpoch;
    }

    /// @notice The latest root posted (zero before the first).
    function latestRoot() external view returns (bytes32) {
        return _latestRoot;
    }

    /// @notice What `account` has been paid so far.
    /// @param account The operator.
    function claimed(address account) external view returns (uint256) {
        return _claimed[account];
    }

    /// @notice The reward token.
    function token() external view returns (RewardToken) {
        return _token;
    }

    /// @dev Every payout passes through here: record, announce, then mint (the only external
    ///      call, made last).
    /// @param account The operator.
    /// @param amount What this claim pays.
    /// @param cumulativeAmount The operator's cumulative amount after it.
    function _pay(address account, uint256 amount, uint256 cumulativeAmount) private {
        _claimed[account] = cumulativeAmount;
        emit Claimed(account, amount, cumulativeAmount);
        _token.mint(account, amount);
    }
}
